#!/usr/bin/env bash
# RBD LUN beside a file LUN and beside `rbd bench` on the same image, in one
# run on this machine: a throwaway one-node Ceph cluster (tests/ceph/cluster.sh),
# one 1 GiB image, ringtgt serving it (write_ack = writethrough: librbd's cache
# off) and a 1 GiB file LUN, each driven by ringtgt-bench. Figures only, no
# pass/fail (docs/benchmarks.md has a run).
#
#   bench/rbd_compare.sh [SECONDS per cell, default 15] [QD, default 16]
#
# Environment: BUILD_DIR (default build; needs ringtgt and bench/ringtgt-bench
# built), PORT_BASE (Ceph ports, default 14300..14349), PORT (iSCSI, default 14360).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
qd=${2:-16}
build=${BUILD_DIR:-build}
base=${PORT_BASE:-14300}
port=${PORT:-14360}
bench=$build/bench/ringtgt-bench
[[ -x $build/ringtgt && -x $bench ]] || { echo "build ringtgt and ringtgt-bench first" >&2; exit 1; }

work=$(mktemp -d /tmp/rbd-bench.XXXXXX)
ceph_dir=$work/ceph
conf=$ceph_dir/ceph.conf
daemon=
cleanup() {
  [[ -n $daemon ]] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  tests/ceph/cluster.sh stop "$ceph_dir" || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "starting the cluster..." >&2
tests/ceph/cluster.sh start "$ceph_dir" "$base" 2>"$work/cluster.log"
rbd -c "$conf" create --size 1G rbd/bench
iqn=iqn.2025-01.org.ringtgt:rbd-bench
cat >"$work/ringtgt.toml" <<EOF
workers = 2
log_level = "warn"
state_dir = "$work/state"
[[portal]]
listen = "127.0.0.1:$port"
[[target]]
name = "$iqn"
  [[target.lun]]
  number = 0
  path = "rbd:rbd/bench"
  [target.lun.rbd]
  conf = "$conf"
  [[target.lun]]
  number = 1
  path = "$work/file.img"
  size = "1G"
EOF

# rbd_bench TYPE: librbd straight to the image (cache off, like the LUN),
# 4 KiB random I/O with QD threads, for about secs seconds' worth of I/O.
rbd_bench() {
  local out
  out=$(rbd -c "$conf" --rbd-cache=false bench --io-type "$1" --io-size 4096 --io-threads "$qd" \
    --io-total $((4096 * 3000 * secs / 2)) --io-pattern rand rbd/bench 2>&1 | tail -n 1)
  # "elapsed: 15  ops: 22500  ops/sec: 1498.5  bytes/sec: 5.9 MiB/s"
  awk '{for (i = 1; i <= NF; i++) if ($i == "ops/sec:") print $(i + 1)}' <<<"$out"
}
# lun_bench LUN RW: ringtgt-bench over iSCSI, one session.
lun_bench() {
  "$bench" --url "iscsi://127.0.0.1:$port/$iqn/$2" --rw "$1" --bs 4096 --qd "$qd" \
    --runtime "$secs" --range 1G --json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["iops"], j["total"]["lat_us"]["p50"], j["total"]["lat_us"]["p99"])'
}

# The image is written once first, so that reads hit allocated objects.
rbd -c "$conf" bench --io-type write --io-size 4M --io-threads 4 --io-total 1G --io-pattern seq \
  rbd/bench >/dev/null 2>&1
echo "rbd bench..." >&2
rbd_w=$(rbd_bench write)
rbd_r=$(rbd_bench read)
"$build/ringtgt" --config "$work/ringtgt.toml" >"$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
echo "ringtgt-bench..." >&2
read -r rw_iops rw_p50 rw_p99 < <(lun_bench randwrite 0)
read -r rr_iops rr_p50 rr_p99 < <(lun_bench randread 0)
read -r fw_iops fw_p50 fw_p99 < <(lun_bench randwrite 1)
read -r fr_iops fr_p50 fr_p99 < <(lun_bench randread 1)

printf '\n4 KiB random I/O, QD %s, %s s per cell, %s\n' "$qd" "$secs" "$(date -u +%F)"
printf '%-34s %10s %10s %10s\n' "path" "IOPS" "p50 us" "p99 us"
printf '%-34s %10s %10s %10s\n' "rbd bench write (librbd, no cache)" "$rbd_w" "-" "-"
printf '%-34s %10s %10s %10s\n' "RBD LUN randwrite (writethrough)" "$rw_iops" "$rw_p50" "$rw_p99"
printf '%-34s %10s %10s %10s\n' "file LUN randwrite (writethrough)" "$fw_iops" "$fw_p50" "$fw_p99"
printf '%-34s %10s %10s %10s\n' "rbd bench read (librbd)" "$rbd_r" "-" "-"
printf '%-34s %10s %10s %10s\n' "RBD LUN randread" "$rr_iops" "$rr_p50" "$rr_p99"
printf '%-34s %10s %10s %10s\n' "file LUN randread" "$fr_iops" "$fr_p50" "$fr_p99"
