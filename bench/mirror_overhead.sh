#!/usr/bin/env bash
# The cost of a mirrored LUN's activity log: 4 KiB random writes on a LUN
# with one local copy, with the log and without it (the daemon started with
# RINGTGT_BENCH_NO_ACTIVITY_LOG=1, a benchmark-only switch), over a range
# the hot set covers (64 MiB) and one twice its size (2 GiB at 1 MiB regions),
# at QD 1 and QD 32. The two daemons alternate, run after run; the table gives
# the median of the runs of each. The figures in docs/replication.md
# ("Overhead of the activity log") come from here.
#
# usage: bench/mirror_overhead.sh [--reps N] [--runtime S] [--port PORT] [--dir DIR]
# Environment: RINGTGT_BIN (default build/ringtgt), RINGTGT_BENCH.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=3
RUNTIME=8
PORT=15400
DIR=/var/tmp
while (($#)); do
  case $1 in
    --reps) REPS=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    *) echo "usage: $0 [--reps N] [--runtime S] [--port PORT] [--dir DIR]" >&2; exit 2 ;;
  esac
done
: "${RINGTGT_BIN:=build/ringtgt}"
: "${RINGTGT_BENCH:=$(dirname "$RINGTGT_BIN")/bench/ringtgt-bench}"
# shellcheck source=bench/mirror_lib.sh
. bench/mirror_lib.sh
bench_scratch "$DIR" mirror-overhead

TGT=iqn.2025-01.com.example:mirror-overhead
cat >"$TMP/ringtgt.toml" <<CONF
workers = 1
log_level = "warn"
state_dir = "$TMP/state"

[[portal]]
listen = "127.0.0.1:$PORT"

[[target]]
name = "$TGT"

  [[target.lun]]
  number = 0
  path = "$TMP/primary.img"
  size = "2G"
  block_size = 512
  write_ack = "writethrough"
  ack_quorum = 2
    [[target.lun.copy]]
    name = "disk2"
    path = "$TMP/disk2.img"
CONF
for f in primary disk2; do written_image "$TMP/$f.img" 2G; done

start() {  # start WITH_LOG(1|0)
  rm -rf "$TMP/state"
  if (($1)); then
    start_bench_daemon "$TMP/ringtgt.toml" "$PORT"
  else
    start_bench_daemon "$TMP/ringtgt.toml" "$PORT" RINGTGT_BENCH_NO_ACTIVITY_LOG=1
  fi
}
stop() {
  kill -TERM "$DAEMON_PID"
  wait "$DAEMON_PID" || true
  DAEMON_PID=""
}

# run QD RANGE: prints "IOPS mean-latency-us" of one run.
run() {
  "$RINGTGT_BENCH" --url "iscsi://127.0.0.1:$PORT/$TGT/0" --rw randwrite --bs 4096 \
    --qd "$1" --range "$2" --runtime "$RUNTIME" --seed 7 --json 2>>"$TMP/bench.err" |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["write"]["iops"], j["write"]["lat_us"]["mean"])'
}

echo "| workload | without: IOPS, mean latency | with: IOPS, mean latency | with / without |"
echo "|---|---|---|---|"
for cell in "1 64M" "32 64M" "1 2G" "32 2G"; do
  read -r qd range <<<"$cell"
  : >"$TMP/with" && : >"$TMP/without"
  for ((r = 0; r < REPS; r++)); do
    for log in 0 1; do
      start "$log"
      run "$qd" "$range" >>"$TMP/$( ((log)) && echo with || echo without)"
      stop
    done
  done
  python3 - "$qd" "$range" "$TMP/without" "$TMP/with" <<'PY'
import statistics, sys
qd, rng, a, b = sys.argv[1:5]
def med(path):
    rows = [tuple(map(float, l.split())) for l in open(path) if l.strip()]
    return statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
(ia, la), (ib, lb) = med(a), med(b)
print(f"| QD {qd}, {rng} range | {ia:.0f}, {la:.0f} µs | {ib:.0f}, {lb:.0f} µs | {ib / ia:.2f} |")
PY
done
