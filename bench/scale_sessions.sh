#!/usr/bin/env bash
# 1,000 logged-in sessions, each doing some I/O: the daemon's VmRSS idle, with
# every session logged in and running, and after they all logged out; the
# figures in docs/security.md ("Limits") come from here.
#
# usage: bench/scale_sessions.sh [--sessions N] [--port PORT] [--runtime S] [--rounds R]
# With --rounds R the sessions log in, run and log out R times against the
# same daemon: VmRSS after each logout tells memory kept for reuse (flat)
# from a leak (growing).
# Environment: RINGTGT_BIN (default build/ringtgt), RINGTGT_BENCH, RINGTGTCTL.
# One target, one LUN; ringtgt-bench processes of up to 250 sessions each (qd 1,
# random 4 KiB reads and writes), each its own initiator name. The limits are
# raised in the config ([limits] max_sessions, max_sessions_per_initiator,
# max_connections) and `ulimit -n` for the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS=1000
PORT=15300
RUNTIME=30
ROUNDS=1
while (($#)); do
  case $1 in
    --sessions) SESSIONS=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "usage: $0 [--sessions N] [--port PORT] [--runtime S] [--rounds R]" >&2; exit 2 ;;
  esac
done
: "${RINGTGT_BIN:=build/ringtgt}"
: "${RINGTGT_BENCH:=$(dirname "$RINGTGT_BIN")/bench/ringtgt-bench}"
: "${RINGTGTCTL:=$(dirname "$RINGTGT_BIN")/ringtgtctl}"
PER_BENCH=250
TMP=$(mktemp -d /tmp/soak-scale.XXXXXX)
DAEMON_PID=""
declare -a BENCH_PIDS=()
cleanup() {
  local p
  for p in "${BENCH_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  [[ -n $DAEMON_PID ]] && kill -KILL "$DAEMON_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# Every session needs a socket in the daemon; leave room for files and rings.
ulimit -n $((SESSIONS * 2 + 1024))
TGT=iqn.2025-01.com.example:scale
cat >"$TMP/ringtgt.toml" <<CONF
workers = 2
log_level = "warn"
state_dir = "$TMP/state"

[[portal]]
listen = "127.0.0.1:$PORT"

[admin]
socket = "$TMP/admin.sock"

[limits]
max_sessions = $((SESSIONS + 64))
max_sessions_per_initiator = $PER_BENCH
max_connections = $((SESSIONS * 2))

[[target]]
name = "$TGT"

  [[target.lun]]
  number = 0
  path = "$TMP/lun.img"
  size = "256M"
CONF

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON_PID/status"; }
fds() { find "/proc/$DAEMON_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }
logged_in() {
  "$RINGTGTCTL" --socket "$TMP/admin.sock" --json session list |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(len(j.get("sessions", j) if isinstance(j, dict) else j))'
}
# wait_for COUNT SECONDS: until the daemon holds COUNT sessions.
wait_for() {
  local i n=0
  for ((i = 0; i < $2 * 10; i++)); do
    n=$(logged_in)
    ((n == $1)) && return 0
    sleep 0.1
  done
  echo "scale: $n sessions logged in after $2 s, expected $1" >&2
  return 1
}

"$RINGTGT_BIN" --config "$TMP/ringtgt.toml" >"$TMP/daemon.log" 2>&1 &
DAEMON_PID=$!
for ((i = 0; i < 150; i++)); do
  [[ -S $TMP/admin.sock ]] && ss -Htln "( sport = :$PORT )" | grep -q . && break
  sleep 0.1
done
rss_idle=$(rss_kib)
fds_idle=$(fds)

# total_ios FILE...: the I/Os the benches' JSON reports count together.
total_ios() {
  python3 -c '
import json, sys
print(sum(json.load(open(f))["total"]["ios"] for f in sys.argv[1:]))' "$@"
}

url="iscsi://127.0.0.1:$PORT/${TGT//:/%3A}/0"
failed=0
for ((round = 1; round <= ROUNDS; round++)); do
  BENCH_PIDS=()
  left=$SESSIONS
  k=0
  while ((left > 0)); do
    n=$((left < PER_BENCH ? left : PER_BENCH))
    "$RINGTGT_BENCH" --url "$url" --initiator-name "iqn.2025-01.com.example:scale-$k" \
      --sessions "$n" --qd 1 --rw randrw --bs 4k --range 64M --runtime "$RUNTIME" --timeout 60 \
      --json --quiet >"$TMP/bench.$round.$k.json" 2>"$TMP/bench.$round.$k.err" &
    BENCH_PIDS+=($!)
    left=$((left - n))
    k=$((k + 1))
  done
  wait_for "$SESSIONS" 120
  rss_full=$(rss_kib)
  fds_full=$(fds)
  for ((j = 0; j < k; j++)); do
    wait "${BENCH_PIDS[$j]}" || failed=$((failed + 1))
  done
  BENCH_PIDS=()
  ios=$(total_ios "$TMP"/bench.$round.*.json)
  wait_for 0 30
  rss_after=$(rss_kib)
  fds_after=$(fds)
  echo "scale: round $round: $SESSIONS sessions in $k ringtgt-bench processes, $ios I/Os in ${RUNTIME} s, $failed bench(es) failed"
  echo "scale: round $round: VmRSS idle $rss_idle KiB ($fds_idle fds), with $SESSIONS sessions $rss_full KiB ($fds_full fds), after logout $rss_after KiB ($fds_after fds)"
  echo "scale: round $round: $(((rss_full - rss_idle) / SESSIONS)) KiB of VmRSS per session"
done
((failed == 0))
