#!/usr/bin/env bash
# Persistent reservations with a real initiator (tests/tools/pr_tool, libiscsi):
# two initiators register, one reserves Write Exclusive with APTPL; the other
# may not write. After a kill -9 and a restart the keys, the reservation and
# its effect are still there; REGISTER with APTPL off removes the state file,
# and a corrupt state file is logged and ignored.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

PR_TOOL=${PR_TOOL:-$(dirname "$RINGTGT_BIN")/tests/pr_tool}
[[ -x $PR_TOOL ]] || fail "pr_tool not found (set PR_TOOL): $PR_TOOL"

PORT=$(pick_port)
TGT=iqn.2025-01.com.example:pr
URL=iscsi://127.0.0.1:$PORT/$(iqn_url "$TGT")/0
I1=iqn.2025-01.com.example:node-one
I2=iqn.2025-01.com.example:node-two
{
  config_prologue "$PORT" "$TGT"
  cat <<EOF

  [[target.lun]]
  number = 0
  path = "$TMP/lun0.img"
  size = "16M"
EOF
} >"$TMP/ringtgt.toml"

pr() { run_ok "$TMP/pr.out" "$PR_TOOL" -i "$1" "$URL" "${@:2}"; }
state_files() { find "$TMP/state" -name 'pr-*.state' 2>/dev/null | wc -l; }

start_daemon "$TMP/ringtgt.toml" "$PORT"

log "register both initiators (the last with APTPL), reserve Write Exclusive"
pr "$I2" register 0x2222
expect_eq "$(state_files)" 0 "state files while APTPL is off"
pr "$I1" register 0x1111 aptpl
pr "$I1" reserve 0x1111 1
expect_eq "$(state_files)" 1 "state files while APTPL is on"
pr "$I2" write
expect_grep '^WRITE RESERVATION_CONFLICT$' "$TMP/pr.out" "a registrant may not write under WE"
pr "$I1" write
expect_grep '^WRITE GOOD$' "$TMP/pr.out" "the holder writes"

log "kill -9 and restart: the reservation must come back from state_dir"
kill9_daemon
start_daemon "$TMP/ringtgt.toml" "$PORT"
expect_grep 'restored from .*pr-[0-9a-f]{16}\.state' "$DAEMON_LOG" "load logged"
pr "$I2" read-keys
expect_grep '^KEY 0x0000000000001111$' "$TMP/pr.out" "first key after restart"
expect_grep '^KEY 0x0000000000002222$' "$TMP/pr.out" "second key after restart"
expect_eq "$(grep -c '^KEY' "$TMP/pr.out")" 2 "number of keys after restart"
pr "$I2" read-reservation
expect_grep '^RESERVATION 0x0000000000001111 TYPE 1$' "$TMP/pr.out" "reservation after restart"
pr "$I2" write
expect_grep '^WRITE RESERVATION_CONFLICT$' "$TMP/pr.out" "the reservation still applies"
pr "$I1" write
expect_grep '^WRITE GOOD$' "$TMP/pr.out" "the holder still writes"

log "REGISTER with APTPL off removes the state file; a restart then forgets"
pr "$I1" register 0x1111
expect_eq "$(state_files)" 0 "state files after APTPL off"
stop_daemon_ok
start_daemon "$TMP/ringtgt.toml" "$PORT"
pr "$I2" read-keys
expect_eq "$(grep -c '^KEY' "$TMP/pr.out")" 0 "keys after a restart without APTPL"
pr "$I2" read-reservation
expect_grep '^RESERVATION NONE$' "$TMP/pr.out" "no reservation without APTPL"

log "a corrupt state file is logged and ignored"
pr "$I1" register 0x3333 aptpl
file=$(find "$TMP/state" -name 'pr-*.state')
[[ -n $file ]] || fail "no state file after REGISTER with APTPL"
stop_daemon_ok
printf 'ringtgt-pr 1\ngeneration 7\nreservation 3 nobody\n' >"$file"
start_daemon "$TMP/ringtgt.toml" "$PORT"
expect_grep 'ignoring persistent reservation file' "$DAEMON_LOG" "corrupt file logged"
pr "$I2" read-keys
expect_eq "$(grep -c '^KEY' "$TMP/pr.out")" 0 "keys after a corrupt state file"
pr "$I2" write
expect_grep '^WRITE GOOD$' "$TMP/pr.out" "no reservation after a corrupt state file"
stop_daemon_ok
