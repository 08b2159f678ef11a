# What bench/mirror_overhead.sh and bench/mirror_latency.sh share: a scratch
# directory removed on exit (with the daemon in it killed), preallocated and
# written images, and a daemon started on a port. Sourced, not run.

# bench_scratch DIR NAME: sets TMP to a new directory under DIR; on exit the
# daemon in DAEMON_PID is killed and TMP removed.
bench_scratch() {
  TMP=$(mktemp -d "$1/$2.XXXXXX")
  DAEMON_PID=""
  trap 'bench_cleanup' EXIT
}
bench_cleanup() {
  local pid
  for pid in ${DAEMON_PID:-} ${SECOND_DAEMON_PID:-}; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}

# written_image FILE SIZE: FILE allocated and written through with zeroes, so
# that no run meets a hole or an unwritten extent.
written_image() {
  fallocate -l "$2" "$1"
  dd if=/dev/zero of="$1" bs=1M count=$(($(stat -c %s "$1") >> 20)) conv=notrunc,fsync status=none
}

# start_bench_daemon CONFIG PORT [ENV=VALUE...]: starts RINGTGT_BIN (log in
# TMP/daemon.log), sets DAEMON_PID, returns once PORT listens; exits when
# the daemon does not start.
start_bench_daemon() {
  local config=$1 port=$2
  shift 2
  env "$@" "$RINGTGT_BIN" --config "$config" >"$TMP/daemon.log" 2>&1 &
  DAEMON_PID=$!
  wait_bench_daemon "$DAEMON_PID" "$port" "$TMP/daemon.log"
}
# start_second_daemon CONFIG PORT: another daemon beside it (a remote copy's
# target; log in TMP/daemon2.log), in SECOND_DAEMON_PID.
start_second_daemon() {
  "$RINGTGT_BIN" --config "$1" >"$TMP/daemon2.log" 2>&1 &
  SECOND_DAEMON_PID=$!
  wait_bench_daemon "$SECOND_DAEMON_PID" "$2" "$TMP/daemon2.log"
}
# wait_bench_daemon PID PORT LOG: returns once PORT listens; exits when PID ends first.
wait_bench_daemon() {
  for _ in $(seq 200); do
    ss -Htln "( sport = :$2 )" | grep -q . && return 0
    kill -0 "$1" 2>/dev/null || break
    sleep 0.05
  done
  cat "$3" >&2
  echo "the daemon did not start" >&2
  exit 1
}
