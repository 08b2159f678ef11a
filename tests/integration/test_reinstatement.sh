#!/usr/bin/env bash
# Session reinstatement waits for the old session's commands, and sessions are
# per target (tests/integration/reinstatement.py, raw iSCSI sessions): with a
# write whose completion is delayed by an injected fault, the reinstating
# login is answered only once that write is out of the backend, and an
# initiator using one ISID towards two targets keeps both sessions.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${RINGTGTCTL:?RINGTGTCTL must name the ringtgtctl binary}"
command -v python3 >/dev/null || fail "python3 is missing"

PORT=$(pick_port)
TGT=iqn.2025-01.com.example:reinstate
TGT2=iqn.2025-01.com.example:reinstate-other
DELAY_LBA=100
DELAY_MS=2500
{
  config_prologue "$PORT" "$TGT"
  cat <<EOF2

  [[target.lun]]
  number = 0
  path = "$TMP/lun0.img"
  size = "16M"

[[target]]
name = "$TGT2"

  [[target.lun]]
  number = 0
  path = "$TMP/other.img"
  size = "16M"

[testing]
fault_injection = true
EOF2
} >"$TMP/ringtgt.toml"

start_daemon "$TMP/ringtgt.toml" "$PORT"
run_ok "$TMP/inject.out" "$RINGTGTCTL" --socket "$TMP/admin.sock" fault inject --target "$TGT" \
  --lun 0 --fault delay --delay-ms "$DELAY_MS" --lba "$DELAY_LBA" --blocks 8 --io write

rc=0
timeout 60 python3 "$RINGTGT_SRC/tests/integration/reinstatement.py" 127.0.0.1 "$PORT" "$TGT" \
  "$TGT2" "$DELAY_LBA" "$DELAY_MS" >"$TMP/reinstate.out" 2>&1 || rc=$?
cat "$TMP/reinstate.out"
((rc == 0)) || fail "reinstatement.py exited with status $rc"
expect_grep '^reinstatement: all checks passed$' "$TMP/reinstate.out" "every check ran"

expect_eq "$(grep -c 'session reinstatement: initiator iqn.2025-01.com.example:reinstated' "$DAEMON_LOG")" \
  1 "one reinstatement (the login to the other target reinstated nothing)"
expect_grep "login of initiator iqn.2025-01.com.example:reinstated ISID [0-9a-f]+ to target $TGT waits until the 1 session\(s\) it reinstates have no command left in the backend" \
  "$DAEMON_LOG" "the waiting login is logged"
stop_daemon_ok
