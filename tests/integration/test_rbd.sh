#!/usr/bin/env bash
# RBD LUNs against a real one-node Ceph cluster (tests/ceph/cluster.sh: monitor,
# manager and one bluestore OSD on 127.0.0.1, started here and always stopped):
# - discovery and a qemu-io pattern round trip, read back again after a
#   restart and directly with `rbd export` (the data is in the image);
# - a writeback LUN (librbd cache on) in the table form of the config;
# - COMPARE AND WRITE through librbd, a miscompare reported with its offset;
# - ringtgt-bench --verify;
# - SIGKILL of ringtgt under acknowledged writes: every one is read back;
# - the OSD stopped under I/O: commands fail with NOT READY within op_timeout
#   (the daemon stays up and says so in its log), and work again once the OSD
#   is back;
# - at start, a LUN whose image is missing or too small refuses that LUN only:
#   the daemon serves its file LUN, the RBD LUN answers NOT READY (lun list,
#   /metrics, an initiator's READ CAPACITY), and once `rbd create` makes the
#   image the LUN comes up by itself and serves a qemu-io round trip;
# - a LUN whose image is missing or too small is refused by lun.add, and the
#   daemon carries on.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

for tool in ceph-mon ceph-mgr ceph-osd ceph rbd qemu-io iscsi-ls; do
  command -v "$tool" >/dev/null || fail "$tool is missing (scripts/deps.sh installs it)"
done
: "${ACK_WRITER:?ACK_WRITER must name the ack_writer tool (tests/tools/ack_writer.c)}"
: "${RINGTGT_BENCH:=$(dirname "$RINGTGT_BIN")/bench/ringtgt-bench}"
CTL=${RINGTGTCTL:-$(dirname "$RINGTGT_BIN")/ringtgtctl}
[[ -x $CTL ]] || fail "ringtgtctl is not built beside $RINGTGT_BIN"

CLUSTER=$RINGTGT_SRC/tests/ceph/cluster.sh
CEPH=$TMP/ceph
CONF=$CEPH/ceph.conf

# The cluster is always stopped, before lib.sh's own exit handler runs.
trap 'rc=$?; set +e; "$CLUSTER" stop "$CEPH"; (exit $rc); _lib_on_exit' EXIT
t0=$SECONDS
"$CLUSTER" start "$CEPH" "$(pick_ceph_base)" 2>"$TMP/cluster.log" || {
  tail -n 40 "$TMP/cluster.log" >&2
  fail "the Ceph cluster did not start"
}
log "Ceph cluster up in $((SECONDS - t0)) s"

ceph_() { ceph -c "$CONF" "$@"; }
rbd_() { rbd -c "$CONF" "$@"; }
# The gateway's cephx user: the minimum caps docs/ceph.md gives.
ceph_ auth get-or-create client.ringtgt mon 'profile rbd' osd 'profile rbd pool=rbd' \
  mgr 'profile rbd pool=rbd' -o "$CEPH/ringtgt.keyring"
rbd_ create --size 64M rbd/lun0
rbd_ create --size 64M rbd/lun1
rbd_ create --size 32M rbd/durable
rbd_ create --size 16M rbd/small
# rbd/late is created only once the daemon runs.

PORT=$(pick_port)
MPORT=$(pick_port)
TGT=iqn.2025-01.com.example:rbd
# How every LUN reaches the cluster: its [target.lun.rbd] lines.
CLIENT="conf = \"$CONF\"
  client = \"ringtgt\"
  keyring = \"$CEPH/ringtgt.keyring\""
# write_config [LUNS]: the daemon's config, with LUNS (more [[target.lun]]
# tables) after LUN 4.
write_config() {
  { config_prologue "$PORT" "$TGT"; cat <<EOF; } >"$TMP/ringtgt.toml"

  [[target.lun]]
  number = 0
  path = "rbd:rbd/lun0"
  write_ack = "writethrough"
  [target.lun.rbd]
  $CLIENT
  op_timeout = 5

  [[target.lun]]
  number = 1
  write_ack = "writeback"
  [target.lun.rbd]
  pool = "rbd"
  image = "lun1"
  $CLIENT
  op_timeout = 5

  [[target.lun]]
  number = 2
  path = "rbd:rbd/durable"
  [target.lun.rbd]
  $CLIENT

  [[target.lun]]
  number = 3
  path = "rbd:rbd/late"
  [target.lun.rbd]
  $CLIENT
  op_timeout = 5

  [[target.lun]]
  number = 4
  path = "$TMP/file4.img"
  size = "16M"
${1:-}
[metrics]
listen = "127.0.0.1:$MPORT"
EOF
}
# At the first start only: LUN 6 needs 32 MiB of a 16 MiB image.
write_config "
  [[target.lun]]
  number = 6
  path = \"rbd:rbd/small\"
  size = \"32M\"
  [target.lun.rbd]
  $CLIENT
  op_timeout = 5
"
run_ok "$TMP/check.txt" "$RINGTGT_BIN" --check-config --config "$TMP/ringtgt.toml"

start_daemon "$TMP/ringtgt.toml" "$PORT"
expect_grep "LUN 0: rbd:rbd/lun0 \(67108864 bytes" "$DAEMON_LOG" "LUN 0 opened on the image"
expect_grep "LUN 1: rbd:rbd/lun1 \(67108864 bytes.*writeback" "$DAEMON_LOG" "LUN 1 opened, writeback"

MiB=1048576
# qemu_io OUT LUN COMMANDS...: one qemu-io login; no error allowed.
qemu_io() {
  local out=$1 lun=$2 args=() c
  shift 2
  for c in "$@"; do args+=(-c "$c"); done
  run_ok "$out" qemu-io -f raw "${args[@]}" "iscsi://127.0.0.1:$PORT/$TGT/$lun"
  if grep -Eq 'Pattern verification failed|error|failed' "$out"; then
    cat "$out" >&2
    fail "qemu-io reported an error on LUN $lun"
  fi
}
REGIONS=("0 512 0x11" "4096 65536 0x22" "$((4 * MiB - 4096)) 8192 0x33" "$((64 * MiB - 512)) 512 0x44")
round_trip() {
  local lun=$1 w=() r=() x off len pat
  for x in "${REGIONS[@]}"; do
    read -r off len pat <<<"$x"
    w+=("write -P $pat $off $len")
    r+=("read -P $pat $off $len")
  done
  r+=("read -P 0 512 3584" "read -P 0 $MiB $MiB")
  qemu_io "$TMP/w$lun.txt" "$lun" "${w[@]}" "flush"
  expect_eq "$(grep -c '^wrote ' "$TMP/w$lun.txt")" "${#REGIONS[@]}" "LUN $lun: writes done"
  qemu_io "$TMP/r$lun.txt" "$lun" "${r[@]}"
  expect_eq "$(grep -c '^read ' "$TMP/r$lun.txt")" "$((${#REGIONS[@]} + 2))" "LUN $lun: reads checked"
}
# metric SERIES: its value on /metrics.
metric() {
  curl -fsS "http://127.0.0.1:$MPORT/metrics" | awk -v want="$1" '$1 == want { print $2 }'
}
# lun_states: "LUN STATE" lines from ringtgtctl lun list --json.
lun_states() {
  "$CTL" --socket "$TMP/admin.sock" --json lun list --target "$TGT" |
    python3 -c 'import json,sys; [print(l["lun"], l["state"]) for l in json.load(sys.stdin)]'
}

log "missing and too-small images at start: those LUNs only wait, NOT READY"
expect_grep "LUN 3: rbd:rbd/late: cannot open image late: No such file or directory; the LUN answers NOT READY" \
  "$DAEMON_LOG" "the missing image logged, with librados' error"
expect_grep "LUN 6: rbd:rbd/small: the image is 16777216 bytes, smaller than the LUN's size 33554432" \
  "$DAEMON_LOG" "the too-small image logged"
qemu_io "$TMP/f4.txt" 4 "write -P 0x4f 0 65536" "read -P 0x4f 0 65536"
rc=0
iscsi-readcapacity16 "iscsi://127.0.0.1:$PORT/$TGT/3" >"$TMP/rc3.txt" 2>&1 || rc=$?
cat "$TMP/rc3.txt"
((rc != 0)) || fail "READ CAPACITY answered on LUN 3, whose image does not exist"
expect_grep 'NOT READY.*0x0401' "$TMP/rc3.txt" "LUN 3 answers NOT READY, becoming ready"
lun_states >"$TMP/states.txt"
expect_grep "^3 not open \(retrying\): rbd:rbd/late: cannot open image late" "$TMP/states.txt" "lun list: LUN 3"
expect_grep "^6 not open \(retrying\): .*smaller than the LUN's size" "$TMP/states.txt" "lun list: LUN 6"
expect_grep "^0 ready$" "$TMP/states.txt" "lun list: LUN 0"
curl -fsS "http://127.0.0.1:$MPORT/metrics" >"$TMP/metrics.txt"
for n in 3 6; do
  expect_grep "^ringtgt_lun_store_open\{target=\"$TGT\",lun=\"$n\"\} 0$" "$TMP/metrics.txt" "LUN $n: store_open 0"
done
failures=$(metric "ringtgt_lun_store_open_failures_total{target=\"$TGT\",lun=\"3\"}")
((${failures:-0} >= 1)) || fail "no failed open counted for LUN 3 (got '$failures')"

log "rbd create: LUN 3 comes up by itself"
rbd_ create --size 64M rbd/late
t_created=$SECONDS
# The retries back off to 30 s at most: 40 s covers one.
for ((i = 0; i < 400; i++)); do
  grep -q "LUN 3: rbd:rbd/late is open; the LUN is ready" "$DAEMON_LOG" && break
  sleep 0.1
done
expect_grep "LUN 3: rbd:rbd/late is open; the LUN is ready" "$DAEMON_LOG" "LUN 3 ready once its image exists"
log "LUN 3 ready $((SECONDS - t_created)) s after rbd create"
lun_states >"$TMP/states.txt"
expect_grep "^3 ready$" "$TMP/states.txt" "lun list: LUN 3 ready"
expect_eq "$(metric "ringtgt_lun_store_open{target=\"$TGT\",lun=\"3\"}")" 1 "LUN 3: store_open"
round_trip 3

log "qemu-io round trip: writethrough LUN 0, writeback LUN 1"
round_trip 0
round_trip 1
# Discards leave zeroes (UNMAP through qemu-io's discard).
qemu_io "$TMP/d0.txt" 0 "discard 4096 65536" "read -P 0 4096 65536" "read -P 0x33 $((4 * MiB - 4096)) 8192"

log "the data is in the images: rbd export after the daemon stopped"
stop_daemon_ok
write_config  # LUN 6 was for the first start
# image_has IMAGE OFF LEN BYTE
image_has() {
  if [[ ! -f $TMP/$1.export ]]; then
    run_ok "$TMP/export-$1.txt" rbd -c "$CONF" --no-progress export "rbd/$1" "$TMP/$1.export"
  fi
  local want got
  want=$(head -c "$3" /dev/zero | tr '\0' "\\$(printf '%03o' "$4")" | sha256sum | cut -d' ' -f1)
  got=$(dd if="$TMP/$1.export" bs=65536 skip="$2" count="$3" iflag=skip_bytes,count_bytes \
    status=none | sha256sum | cut -d' ' -f1)
  [[ $want == "$got" ]] || fail "rbd/$1 at $2+$3: expected every byte $4"
}
image_has lun0 0 512 0x11
image_has lun0 $((4 * MiB - 4096)) 8192 0x33
image_has lun0 4096 65536 0
image_has lun1 4096 65536 0x22
image_has lun1 $((64 * MiB - 512)) 512 0x44

start_daemon "$TMP/ringtgt.toml" "$PORT"

# iscsi-ls -s fails on a LUN that is not ready (its TEST UNIT READY): LUN 6,
# too small, is in the first start's config only.
log "discovery"
run_ok "$TMP/ls.txt" iscsi-ls -s "iscsi://127.0.0.1:$PORT"
expect_grep "$TGT" "$TMP/ls.txt" "the target in discovery"
expect_grep "Lun:0 .*Size:6" "$TMP/ls.txt" "LUN 0 of 64 MiB listed"
expect_grep "Lun:3 .*Size:6" "$TMP/ls.txt" "LUN 3 of 64 MiB listed"

log "COMPARE AND WRITE through librbd (iscsi-test-cu's CompareAndWrite suite on LUN 0)"
run_ok "$TMP/caw.txt" timeout 120 iscsi-test-cu -d -t ALL.CompareAndWrite \
  "iscsi://127.0.0.1:$PORT/$TGT/0"
grep -E 'Test: |passed|FAILED' "$TMP/caw.txt" | tail -n 12
expect_no_grep 'FAILED' "$TMP/caw.txt" "no CompareAndWrite test fails"
expect_grep 'Miscompare.*passed|Test: CompareAndWrite.Miscompare ...passed' "$TMP/caw.txt" \
  "the miscompare test ran and passed"

log "ringtgt-bench --verify on the writeback LUN"
[[ -x $RINGTGT_BENCH ]] || fail "RINGTGT_BENCH=$RINGTGT_BENCH is not executable"
rc=0
# 16 MiB on, away from the blocks the round trip wrote (unwritten blocks must read zero).
timeout 60 "$RINGTGT_BENCH" --url "iscsi://127.0.0.1:$PORT/$TGT/1" --json --verify --rw randrw \
  --sessions 2 --qd 8 --bs 4096 --runtime 3 --offset 16M --range 8M \
  --save-state "$TMP/bench.state" >"$TMP/bench.json" 2>"$TMP/bench.err" || rc=$?
[[ $rc == 0 ]] || { cat "$TMP/bench.err" "$TMP/bench.json" >&2; fail "bench --verify exited $rc"; }
json_get() {
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}
expect_eq "$(json_get "$TMP/bench.json" 'j["errors"]')" 0 "bench errors"
expect_eq "$(json_get "$TMP/bench.json" 'j["verify_failures"]')" 0 "bench verify failures"
checked=$(json_get "$TMP/bench.json" 'j["verify"]["blocks_checked"]')
((checked > 0)) || fail "the bench verified no block"
log "bench: $(json_get "$TMP/bench.json" 'j["iops"]') IOPS, $checked blocks verified"
# A clean stop closes the image, which flushes librbd's cache: every block
# the bench saw acknowledged reads back after a restart.
stop_daemon_ok
start_daemon "$TMP/ringtgt.toml" "$PORT"
rc=0
timeout 60 "$RINGTGT_BENCH" --url "iscsi://127.0.0.1:$PORT/$TGT/1" --json --verify-only \
  --bs 4096 --offset 16M --range 8M --load-state "$TMP/bench.state" >"$TMP/bench2.json" \
  2>"$TMP/bench2.err" || rc=$?
[[ $rc == 0 ]] || { cat "$TMP/bench2.err" >&2; fail "verify-only after the restart exited $rc"; }
expect_eq "$(json_get "$TMP/bench2.json" 'j["verify_failures"]')" 0 "verify failures after restart"
log "after restart: $(json_get "$TMP/bench2.json" 'j["verify"]["blocks_checked"]') blocks verified"

log "SIGKILL under acknowledged writes (LUN 2, writethrough)"
"$ACK_WRITER" write -s 7 "iscsi://127.0.0.1:$PORT/$TGT/2" >"$TMP/ack.log" 2>"$TMP/ack.err" &
wpid=$!
bg_track "$wpid"
for ((i = 0; i < 100; i++)); do
  (($(grep -c '^ACK ' "$TMP/ack.log" || true) > 200)) && break
  kill -0 "$wpid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$wpid" 2>/dev/null || { cat "$TMP/ack.err" >&2; fail "the writer stopped early"; }
kill9_daemon
for ((i = 0; i < 150; i++)); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$wpid" 2>/dev/null && fail "the writer did not notice the dead target within 15 s"
wait "$wpid" || true
n=$(grep -c '^ACK ' "$TMP/ack.log" || true)
((n > 100)) || fail "only $n writes acknowledged before SIGKILL"
start_daemon "$TMP/ringtgt.toml" "$PORT"
run_ok "$TMP/verify.txt" "$ACK_WRITER" verify "iscsi://127.0.0.1:$PORT/$TGT/2" "$TMP/ack.log"
expect_grep '^VERIFIED [0-9]+ blocks' "$TMP/verify.txt" "every acknowledged block read back"
log "$n writes acknowledged before SIGKILL; after restart: $(cat "$TMP/verify.txt")"
run_ok "$TMP/export-durable.txt" rbd -c "$CONF" --no-progress export rbd/durable "$TMP/durable.export"
run_ok "$TMP/vfile.txt" "$ACK_WRITER" verify-file "$TMP/durable.export" 512 "$TMP/ack.log"
expect_grep '^VERIFIED ' "$TMP/vfile.txt" "every acknowledged block in the image (rbd export)"

log "the OSD stopped under writes: NOT READY within op_timeout (5 s), then recovery"
"$ACK_WRITER" write -s 5 "iscsi://127.0.0.1:$PORT/$TGT/0" >"$TMP/ack0.log" 2>"$TMP/ack0.err" &
wpid=$!
bg_track "$wpid"
for ((i = 0; i < 100; i++)); do
  (($(grep -c '^ACK ' "$TMP/ack0.log" || true) > 50)) && break
  sleep 0.1
done
kill -0 "$wpid" 2>/dev/null || { cat "$TMP/ack0.err" >&2; fail "the writer stopped early"; }
"$CLUSTER" stop-osd "$CEPH"
t_stop=$SECONDS
# The writer's next write waits for op_timeout, then fails (the writer stops
# at its first failed write).
for ((i = 0; i < 300; i++)); do kill -0 "$wpid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$wpid" 2>/dev/null && fail "a write with the OSD down was not answered within 30 s"
rc=0
wait "$wpid" || rc=$?
((rc != 0)) || fail "the writer exited 0 although the OSD was down"
log "writer stopped $((SECONDS - t_stop)) s after the OSD: $(tail -n 1 "$TMP/ack0.err")"
rc=0
timeout 60 qemu-io -f raw -c "write -P 0x77 $((60 * MiB)) 65536" "iscsi://127.0.0.1:$PORT/$TGT/0" \
  >"$TMP/down.txt" 2>&1 || rc=$?
cat "$TMP/down.txt"
((rc != 124)) || fail "a write with the OSD down hung for 60 s (op_timeout is 5 s)"
expect_grep 'NOT READY.*0x0401' "$TMP/down.txt" "NOT READY, BECOMING READY while the OSD is down"
expect_grep 'the Ceph cluster did not answer' "$DAEMON_LOG" "the daemon logs the cluster as away"
kill -0 "$DAEMON_PID" || fail "the daemon died while the OSD was down"
sel='target="'$TGT'",lun="0"'
expect_eq "$(metric "ringtgt_lun_store_unreachable{$sel}")" 1 "the unreachable gauge while the OSD is down"
timeouts=$(metric "ringtgt_lun_store_errors_total{$sel,reason=\"timeout\"}")
[[ -n $timeouts && $timeouts != 0 ]] || fail "no store timeout counted (got '$timeouts')"
"$CLUSTER" start-osd "$CEPH"
log "OSD back $((SECONDS - t_stop)) s after it stopped"
qemu_io "$TMP/after.txt" 0 "write -P 0x78 $((60 * MiB)) 512" "read -P 0x78 $((60 * MiB)) 512"
expect_grep 'the Ceph cluster answers again' "$DAEMON_LOG" "the daemon logs the recovery"
expect_eq "$(metric "ringtgt_lun_store_unreachable{$sel}")" 0 "the unreachable gauge after recovery"
ops=$(metric "ringtgt_lun_store_latency_seconds_count{$sel}")
((${ops:-0} > 0)) || fail "no librbd latency recorded for LUN 0 (got '$ops')"
run_ok "$TMP/verify0.txt" "$ACK_WRITER" verify "iscsi://127.0.0.1:$PORT/$TGT/0" "$TMP/ack0.log"
expect_grep '^VERIFIED [0-9]+ blocks' "$TMP/verify0.txt" "writes acknowledged before the outage"
log "after recovery: $(cat "$TMP/verify0.txt")"

log "lun add: a missing or too-small image is refused, the daemon carries on"
add() {
  "$CTL" --socket "$TMP/admin.sock" lun add --target "$TGT" --lun "$1" --path "$2" \
    --rbd-conf "$CONF" --rbd-client ringtgt --rbd-keyring "$CEPH/ringtgt.keyring" \
    --rbd-op-timeout 5 "${@:3}"
}
run_fails "$TMP/add_missing.txt" add 5 rbd:rbd/nosuch
expect_grep 'cannot open image nosuch' "$TMP/add_missing.txt" "lun add names the missing image"
run_fails "$TMP/add_small.txt" add 5 rbd:rbd/small --size 32M
expect_grep 'smaller than the LUN' "$TMP/add_small.txt" "lun add names the too-small image"
run_ok "$TMP/add_ok.txt" add 5 rbd:rbd/small
qemu_io "$TMP/l5.txt" 5 "write -P 0x55 0 4096" "read -P 0x55 0 4096"
qemu_io "$TMP/l0.txt" 0 "read -P 0x78 $((60 * MiB)) 512"
stop_daemon_ok
# The issue's bound: the cluster's start and every RBD test within 4 minutes.
((SECONDS <= 240)) || fail "the RBD tests took $SECONDS s, over the 4-minute budget"
log "cluster start and RBD tests: $SECONDS s"
