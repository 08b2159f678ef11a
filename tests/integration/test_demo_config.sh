#!/usr/bin/env bash
# The Quick start's demo (conf/demo.toml, as scripts/demo.sh runs it) on a
# fresh checkout: its state folder does not exist yet, and the daemon must make
# it and the sparse LUN files in it. The copy differs from conf/demo.toml only
# in the portal and metrics ports, so that it can run beside anything else.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

PORT=$(pick_port)
MPORT=$(pick_port)
mkdir -p "$TMP/conf"
sed -e "s/127\.0\.0\.1:3260/127.0.0.1:$PORT/" -e "s/127\.0\.0\.1:9105/127.0.0.1:$MPORT/" \
  "$RINGTGT_SRC/conf/demo.toml" >"$TMP/conf/demo.toml"
[[ ! -e $TMP/state ]] || fail "state folder exists before the start"
start_daemon "$TMP/conf/demo.toml" "$PORT"
[[ -d $TMP/state ]] || fail "the daemon did not make its state folder $TMP/state"
run_ok "$TMP/ls.out" iscsi-ls -s "iscsi://127.0.0.1:$PORT"
expect_grep "Target:iqn\.2025-01\.com\.jacobgade:demo Portal" "$TMP/ls.out" "the demo target"
expect_grep "Lun:2 +Type:DIRECT_ACCESS" "$TMP/ls.out" "the demo's LUN 2"
run_ok "$TMP/io.out" qemu-io -f raw -c "write -P 0xab 0 1M" -c "read -P 0xab 0 1M" \
  "iscsi://127.0.0.1:$PORT/iqn.2025-01.com.jacobgade:demo/1"
[[ -S $TMP/state/admin.sock ]] || fail "no admin socket in $TMP/state"
stop_daemon_ok
log "done"
