#!/usr/bin/env bash
# libiscsi conformance: every test listed in tests/conformance/expected.txt
# must pass against the daemon (RINGTGT_BIN). Prints passed/failed/skipped
# counts per family, and the tests that pass but are not listed yet (add them
# with tests/conformance/run.sh --update). Runs for a few minutes.
set -uo pipefail
src=${RINGTGT_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
export RINGTGT_SRC=$src
export RINGTGT_BIN=${RINGTGT_BIN:-$src/build/ringtgt}
"$src/tests/conformance/run.sh"
