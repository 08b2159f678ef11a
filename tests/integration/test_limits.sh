#!/usr/bin/env bash
# [limits]: sessions per initiator and in all, TCP connections, the buffer
# memory budget, and the responses a session may leave unread, against the
# real daemon (tests/hostile/limits.py),
# each refusal logged naming the initiator or peer and counted in /metrics.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || fail "python3 is missing"
PORT=$(pick_port)
MPORT=$(pick_port)
TGT=iqn.2025-01.com.example:limits
{
  config_prologue "$PORT" "$TGT"
  cat <<CONF

  [[target.lun]]
  number = 0
  path = "$TMP/lun0.img"
  size = "128M"

[limits]
max_sessions = 3
max_sessions_per_initiator = 2
max_connections = 8
max_buffer_memory = "64M"
max_session_output = "1M"

[metrics]
listen = "127.0.0.1:$MPORT"
CONF
} >"$TMP/ringtgt.toml"
start_daemon "$TMP/ringtgt.toml" "$PORT"

run_ok "$TMP/limits.out" timeout 300 python3 "$RINGTGT_SRC/tests/hostile/limits.py" \
  127.0.0.1 "$PORT" "$TGT" "$DAEMON_PID" "$MPORT"
cat "$TMP/limits.out"
expect_grep '^4 passed, 0 failed$' "$TMP/limits.out" "every limit enforced"

expect_grep 'login refused: initiator iqn\.2025-01\.com\.example:limits-a: 2 sessions of it open \(limits\.max_sessions_per_initiator\)' \
  "$DAEMON_LOG" "the per-initiator refusal logged"
expect_grep 'login refused: initiator iqn\.2025-01\.com\.example:limits-c: 3 sessions open \(limits\.max_sessions\)' \
  "$DAEMON_LOG" "the total refusal logged"
expect_grep 'login refused: initiator iqn\.2025-01\.com\.example:limits-a .*limit_reached' \
  "$DAEMON_LOG" "the login failure reason"
expect_grep 'connection from 127\.0\.0\.1:[0-9]+ to .* closed: 8 connections open \(limits\.max_connections' \
  "$DAEMON_LOG" "the refused connection logged"
expect_grep 'no buffer memory for a 1048576-byte command \(limits\.max_buffer_memory\); answered TASK SET FULL' \
  "$DAEMON_LOG" "the budget logged"

curl -fsS --max-time 5 "http://127.0.0.1:$MPORT/metrics" -o "$TMP/scrape.txt" || fail "GET /metrics"
val() { python3 "$RINGTGT_SRC/tests/integration/metrics_check.py" "$TMP/scrape.txt" value "$1" ||
  fail "series $1 missing"; }
refused=$(val 'ringtgt_commands_refused_total{cause="buffer_memory"}')
((refused > 0)) || fail "TASK SET FULL for lack of buffer memory not counted ($refused)"
expect_eq "$(val ringtgt_buffer_memory_limit_bytes)" $((64 << 20)) "the buffer memory limit exported"
val ringtgt_buffer_memory_bytes >/dev/null
limit=$(val 'ringtgt_login_failures_total{reason="limit"}')
((limit >= 2)) || fail "session-limit refusals counted $limit times, expected 2 or more"
stop_daemon_ok
