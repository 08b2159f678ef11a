#!/usr/bin/env bash
# A subset of the conformance list on an RBD LUN, for ctest: the block
# command families an RBD backend changes most (READ and WRITE 10/16, COMPARE
# AND WRITE through librbd, UNMAP and WRITE SAME as discards, GET LBA STATUS),
# on a one-node Ceph cluster started and stopped by tests/ceph/conformance.sh.
# Every test of the subset on tests/conformance/expected.txt must pass, minus
# tests/conformance/rbd-differences.txt. The whole list (about 200 tests,
# Unmap.Simple alone about 60 s of small discards) takes far longer: run
# tests/ceph/conformance.sh by hand for it. Measured times: docs/ceph.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export SUBSET=${SUBSET:-'^(Read10|Read16|Write10|Write16|CompareAndWrite|WriteSame16|GetLBAStatus)\.|^Unmap\.(VPD|ZeroBlocks)$'}
export SUITE_TIMEOUT=${SUITE_TIMEOUT:-600}
exec bash "$here/../ceph/conformance.sh"
