#!/usr/bin/env bash
# libiscsi's conformance suite (iscsi-test-cu, tests/conformance/run.sh) on an
# RBD LUN of a real one-node Ceph cluster (tests/ceph/cluster.sh, started here
# and always stopped): every test on tests/conformance/expected.txt must pass,
# except those listed with their reason in tests/conformance/rbd-differences.txt.
#
# Not registered with ctest (yet): every test is I/O against the cluster, and
# on a 2-core machine shared with builds (load 13) tests took 5-30 s each, far
# beyond a ctest budget. Run it by hand:
#   RINGTGT_BIN=build/ringtgt VERBOSE=1 RESULTS_DIR=/tmp/rbd-conf tests/ceph/conformance.sh
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"

for tool in ceph-mon ceph-mgr ceph-osd ceph rbd iscsi-test-cu; do
  command -v "$tool" >/dev/null || fail "$tool is missing (scripts/deps.sh installs it)"
done
CLUSTER=$RINGTGT_SRC/tests/ceph/cluster.sh
CEPH=$TMP/ceph
CONF=$CEPH/ceph.conf

base=$(pick_ceph_base)
trap 'rc=$?; set +e; "$CLUSTER" stop "$CEPH"; (exit $rc); _lib_on_exit' EXIT
"$CLUSTER" start "$CEPH" "$base" 2>"$TMP/cluster.log" || {
  tail -n 40 "$TMP/cluster.log" >&2
  fail "the Ceph cluster did not start"
}
log "Ceph cluster up in $SECONDS s"
ceph -c "$CONF" auth get-or-create client.ringtgt mon 'profile rbd' osd 'profile rbd pool=rbd' \
  mgr 'profile rbd pool=rbd' -o "$CEPH/ringtgt.keyring"
rbd -c "$CONF" create --size 256M rbd/conformance

rc=0
RUNS=rbd RBD_IMAGE=rbd/conformance RBD_CONF=$CONF RBD_CLIENT=ringtgt \
  RBD_KEYRING=$CEPH/ringtgt.keyring PER_TEST_TIMEOUT=60 SUITE_TIMEOUT=${SUITE_TIMEOUT:-3600} \
  "$RINGTGT_SRC/tests/conformance/run.sh" || rc=$?
((rc == 0)) || fail "conformance on the RBD LUN: run.sh exited $rc"
log "cluster start and conformance run: $SECONDS s"
