#!/usr/bin/env bash
# Task management ends what SAM-5 says it ends, and answers only once it is
# gone (tests/integration/task_management.py, two raw iSCSI sessions): CLEAR
# TASK SET, LOGICAL UNIT RESET and TARGET WARM RESET from one session end
# another session's WRITE held at its R2T, whose late data never lands;
# ABORT TASK SET leaves the other session's WRITE alone; an ABORT TASK of a
# command never sent fills its CmdSN hole. The daemon logs each abort and
# stays healthy.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || fail "python3 is missing"

PORT=$(pick_port)
TGT=iqn.2025-01.com.example:tmf
{
  config_prologue "$PORT" "$TGT"
  cat <<EOF2

  [[target.lun]]
  number = 0
  path = "$TMP/lun0.img"
  size = "16M"
EOF2
} >"$TMP/ringtgt.toml"

start_daemon "$TMP/ringtgt.toml" "$PORT"

rc=0
timeout 90 python3 "$RINGTGT_SRC/tests/integration/task_management.py" 127.0.0.1 "$PORT" "$TGT" \
  >"$TMP/tmf.out" 2>&1 || rc=$?
cat "$TMP/tmf.out"
((rc == 0)) || fail "task_management.py exited with status $rc"
expect_grep '^task_management: all checks passed$' "$TMP/tmf.out" "every check ran"

# ABORT TASK of a command the initiator never sent fills its CmdSN hole
# (RFC 7143 §11.5.1 b), as libiscsi and QEMU expect.
rc=0
RINGTGT_SRC=$RINGTGT_SRC timeout 30 python3 "$RINGTGT_SRC/tests/integration/abort_cmdsn_hole.py" \
  127.0.0.1 "$PORT" "$TGT" >"$TMP/hole.out" 2>&1 || rc=$?
cat "$TMP/hole.out"
((rc == 0)) || fail "abort_cmdsn_hole.py exited with status $rc"
expect_grep '^READ\(10\) with CmdSN [0-9]+: status 0x0: OK$' "$TMP/hole.out" \
  "the command after the hole is answered"

log "B's connection logs each WRITE another nexus ended"
expect_eq "$(grep -cE '\(iqn\.2025-01\.com\.example:node-b\): task 0x[0-9a-f]+ for LUN 0 aborted by its logical unit' "$DAEMON_LOG")" \
  3 "aborts of B's WRITE logged (CLEAR TASK SET, LU RESET, TARGET WARM RESET)"
expect_grep 'task management 5 from iqn\.2025-01\.com\.example:node-a .* once the aborted tasks of 1 task set\(s\) are out of the backend' \
  "$DAEMON_LOG" "the LU reset waited for the other sessions"
stop_daemon_ok
