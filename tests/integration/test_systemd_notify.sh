#!/usr/bin/env bash
# sd_notify as systemd sees it: a datagram listener on NOTIFY_SOCKET, the
# daemon started with WATCHDOG_USEC/WATCHDOG_PID. READY=1 comes once the portal
# listens (with a STATUS= line), WATCHDOG=1 pings keep coming, STATUS= is
# refreshed, and SIGTERM brings STOPPING=1 and exit status 0. Without
# WATCHDOG_USEC there are no pings.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

PORT=$(pick_port)
TARGET=iqn.2025-01.com.example:notify
config_prologue "$PORT" "$TARGET" >"$TMP/ringtgt.toml"
cat >>"$TMP/ringtgt.toml" <<CONF
  [[target.lun]]
  number = 0
  path = "$TMP/lun0.img"
  size = "4M"
CONF

SOCK="$TMP/notify.sock"
NLOG="$TMP/notify.log"
python3 "$RINGTGT_SRC/tests/integration/notify_listener.py" "$SOCK" "$NLOG" 60 &
bg_track $!
for ((i = 0; i < 50; i++)); do [[ -e $NLOG.ready ]] && break; sleep 0.1; done
[[ -e $NLOG.ready ]] || fail "notify listener did not start"

log "daemon with NOTIFY_SOCKET and a 2 s watchdog"
DAEMON_LOG="$TMP/daemon.log"
ALL_LOGS+=("$DAEMON_LOG")
# WATCHDOG_PID must be the daemon's own PID: exec keeps the shell's.
NOTIFY_SOCKET="$SOCK" WATCHDOG_USEC=2000000 bash -c \
  'export WATCHDOG_PID=$$; exec "$0" --config "$1"' "$RINGTGT_BIN" "$TMP/ringtgt.toml" \
  >"$DAEMON_LOG" 2>&1 &
DAEMON_PID=$!
for ((i = 0; i < 150; i++)); do
  grep -q 'READY=1' "$NLOG" 2>/dev/null && break
  kill -0 "$DAEMON_PID" 2>/dev/null || fail "daemon exited during start-up"
  sleep 0.1
done
expect_grep '^[0-9.]+ READY=1\|STATUS=serving 1 targets, 0 sessions' "$NLOG" "READY=1 with a STATUS"
port_listening "$PORT" || fail "READY=1 sent before the portal listens"
expect_grep 'systemd watchdog: 2000 ms' "$DAEMON_LOG" "the watchdog is announced"

log "watchdog pings and STATUS refreshes for 6 s"
sleep 6
pings=$(grep -c 'WATCHDOG=1' "$NLOG" || true)
# One ping per second (half of 2 s): at least 4 in 6 s, and not a flood.
((pings >= 4 && pings <= 12)) || fail "$pings WATCHDOG=1 pings in 6 s, expected 4..12"
statuses=$(grep -c '^[0-9.]* STATUS=serving' "$NLOG" || true)
((statuses >= 1)) || fail "no periodic STATUS= after READY=1"
expect_no_grep 'STOPPING=1' "$NLOG" "STOPPING before SIGTERM"

log "SIGTERM: STOPPING=1 and exit 0"
stop_daemon_ok
sleep 0.2
expect_grep 'STOPPING=1' "$NLOG" "STOPPING=1 on SIGTERM"
last_ping=$(grep 'WATCHDOG=1' "$NLOG" | tail -n1 | cut -d' ' -f1)
stop_at=$(grep 'STOPPING=1' "$NLOG" | cut -d' ' -f1)
python3 -c "import sys; sys.exit(0 if float('$last_ping') <= float('$stop_at') else 1)" ||
  fail "a WATCHDOG=1 ping after STOPPING=1"

log "no WATCHDOG_USEC: READY=1 but no pings"
: >"$NLOG"
PORT2=$(pick_port)
sed "s/127.0.0.1:$PORT/127.0.0.1:$PORT2/" "$TMP/ringtgt.toml" >"$TMP/ringtgt2.toml"
NOTIFY_SOCKET="$SOCK" start_daemon "$TMP/ringtgt2.toml" "$PORT2"
sleep 2.5
expect_grep 'READY=1' "$NLOG" "READY=1 without a watchdog"
expect_no_grep 'WATCHDOG=1' "$NLOG" "pings without WATCHDOG_USEC"
stop_daemon_ok
