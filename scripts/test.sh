#!/usr/bin/env bash
# Quick start 2: installs what is missing, builds, and runs every test
# (unit, integration with real initiators, conformance list).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 1800 "$@"
