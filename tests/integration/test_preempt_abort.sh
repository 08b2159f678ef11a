#!/usr/bin/env bash
# PREEMPT AND ABORT fences another session's write in flight
# (tests/integration/preempt_abort.py, two raw iSCSI sessions): the preempted
# session's WRITE waiting for Data-Out ends with no status once the preempting
# session has GOOD, its late data never lands, and its session lives on. The
# daemon logs the abort and stays healthy.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || fail "python3 is missing"
PR_TOOL=${PR_TOOL:-$(dirname "$RINGTGT_BIN")/tests/pr_tool}
[[ -x $PR_TOOL ]] || fail "pr_tool not found (set PR_TOOL): $PR_TOOL"

PORT=$(pick_port)
TGT=iqn.2025-01.com.example:fence
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

log "B holds a WRITE at its R2T; A preempts and aborts B; B's data must not land"
rc=0
timeout 60 python3 "$RINGTGT_SRC/tests/integration/preempt_abort.py" 127.0.0.1 "$PORT" "$TGT" \
  >"$TMP/fence.out" 2>&1 || rc=$?
cat "$TMP/fence.out"
((rc == 0)) || fail "preempt_abort.py exited with status $rc"
expect_grep '^preempt_abort: all checks passed$' "$TMP/fence.out" "every check ran"

log "the abort is logged: by whom, whose tasks, and the task the session lost"
expect_grep 'PREEMPT AND ABORT by iqn\.2025-01\.com\.example:node-a,i,0x[0-9a-f]{12}: aborting the tasks of iqn\.2025-01\.com\.example:node-b,i,0x[0-9a-f]{12}' \
  "$DAEMON_LOG" "the LU logs the preemption"
expect_grep '\(iqn\.2025-01\.com\.example:node-b\): task 0x[0-9a-f]+ for LUN 0 aborted by its logical unit, not in the backend' \
  "$DAEMON_LOG" "B's connection logs its aborted WRITE"
expect_eq "$(grep -cE '\(iqn\.2025-01\.com\.example:node-b\): task 0x[0-9a-f]+ for LUN 0 aborted by its logical unit' "$DAEMON_LOG")" \
  1 "B lost that one task"
expect_no_grep 'no transport to abort' "$DAEMON_LOG" "the transport hook is installed"

log "the daemon stays healthy: a new session reads the keys, SIGTERM exits cleanly"
run_ok "$TMP/pr.out" "$PR_TOOL" -i iqn.2025-01.com.example:node-c \
  "iscsi://127.0.0.1:$PORT/$(iqn_url "$TGT")/0" read-keys
expect_grep '^KEY 0x000000000000aaaa$' "$TMP/pr.out" "A's key, read by a third initiator"
expect_eq "$(grep -c '^KEY' "$TMP/pr.out")" 1 "number of keys"
stop_daemon_ok
