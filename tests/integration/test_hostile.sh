#!/usr/bin/env bash
# Hostile peers: malformed and adversarial PDUs (tests/hostile/peer.py) against
# the daemon. After every attack a normal session on a new connection must
# still write and read back data; the daemon must stay up with bounded memory,
# and log what it refused.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || fail "python3 is missing"
# Thousands of idle connections need descriptors on both sides.
ulimit -n 8192 || fail "cannot raise the open-file limit to 8192"

PORT=$(pick_port)
TGT=iqn.2025-01.com.example:hostile
cat >"$TMP/ringtgt.toml" <<CONF
workers = 2
log_level = "info"
state_dir = "$TMP/state"

[[portal]]
listen = "127.0.0.1:$PORT"

[iscsi]
login_timeout = 3

# 2000 idle connections are one of the attacks: above the default limit.
[limits]
max_connections = 4096

[[target]]
name = "$TGT"

  [[target.lun]]
  number = 0
  path = "$TMP/lun0.img"
  size = "64M"
CONF
start_daemon "$TMP/ringtgt.toml" "$PORT"

run_ok "$TMP/peer.out" timeout 600 python3 "$RINGTGT_SRC/tests/hostile/peer.py" \
  127.0.0.1 "$PORT" "$TGT" "$DAEMON_PID"
cat "$TMP/peer.out"
expect_grep '^[0-9]+ passed, 0 failed$' "$TMP/peer.out" "every attack handled"

# The refusals are logged with the peer address.
expect_grep 'login refused: .*peer 127\.0\.0\.1:[0-9]+' "$DAEMON_LOG" "a refused login logged"
expect_grep 'reject opcode' "$DAEMON_LOG" "a Reject logged"
expect_grep 'login not completed within 3s' "$DAEMON_LOG" "the slow login timed out"
expect_grep 'session reinstatement' "$DAEMON_LOG" "session reinstatement logged"
stop_daemon_ok
