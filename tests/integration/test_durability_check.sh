#!/usr/bin/env bash
# Proof that an acknowledgement means what it says (issue 12): the daemon
# records every write, flush and GOOD in its durability log ([testing]
# durability_log) under load, and ringtgt-durability-check replays it with a
# power cut after every event. A SIGKILL keeps the page cache, so only this
# replay can see a GOOD sent before the data was durable.
#
# One daemon serves twelve LUNs: writethrough, writeback, and writeback with
# FUA writes, each on a file, a direct_io file, a loop device and a loop
# device with --direct-io=on. On each, at once: ringtgt-bench --verify
# (2 sessions), durab_load (3 sessions of overlapping WRITE(6/10/12/16), FUA,
# WRITE AND VERIFY, WRITE SAME with pattern/zeroes/UNMAP, UNMAP, COMPARE AND
# WRITE, SYNCHRONIZE CACHE) and EXTENDED COPY. The checker must find every
# promise kept and the durable image equal to what the bench expects; the
# bench re-reads its span too. Then a second daemon with [testing]
# ack_before_flush (GOOD from the page cache, no flush) must make the checker
# fail, naming the violation.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${RINGTGT_BENCH:=$(dirname "$RINGTGT_BIN")/bench/ringtgt-bench}"
: "${DURABILITY_CHECK:=$(dirname "$RINGTGT_BIN")/bench/ringtgt-durability-check}"
: "${DURAB_LOAD:?DURAB_LOAD must name the durab_load tool (tests/tools/durab_load.c)}"
: "${XCOPY_TOOL:?XCOPY_TOOL must name the xcopy_tool (tests/tools/xcopy_tool.c)}"
for tool in "$RINGTGT_BENCH" "$DURABILITY_CHECK" "$DURAB_LOAD" "$XCOPY_TOOL"; do
  [[ -x $tool ]] || fail "$tool is not executable"
done
[[ $(id -u) == 0 ]] || fail "losetup needs root: run this test as root"
command -v losetup >/dev/null || fail "losetup missing (scripts/deps.sh installs mount)"

LOAD_S=${DURABILITY_LOAD_SECONDS:-6}
TGT=iqn.2025-01.com.example:durability
BENCH_RANGE=4M # the bench's span: LBAs 0..8191 (512-byte blocks)
CHAOS_LBA=16384 CHAOS_BLOCKS=2048
COPY_DST_LBA=24576 COPY_BLOCKS=256

# Ports of this test's own range (14500-14599), free ones only.
PORT=""
for p in $(seq 14500 14599); do
  if ! ss -Htan "( sport = :$p )" | grep -q .; then
    PORT=$p
    break
  fi
done
[[ -n $PORT ]] || fail "no free port in 14500-14599"

declare -a LOOPS=()
detach_loops() {
  local d
  for d in "${LOOPS[@]}"; do losetup -d "$d" 2>/dev/null || true; done
}
# The daemon (killed by lib.sh's handler) may still hold a device: losetup -d
# then only marks it to go away once closed, which is what we want.
trap '_rc=$?; detach_loops; (exit $_rc); _lib_on_exit' EXIT

# new_loop FILE [--direct-io=on]: a 32 MiB file behind a loop device.
new_loop() {
  truncate -s 32M "$1"
  local dev
  dev=$(losetup -f --show "${@:2}" "$1") || fail "losetup $* failed"
  LOOPS+=("$dev")
  echo "$dev"
}

# lun_table NUMBER PATH POLICY DIRECT: one [[target.lun]].
lun_table() {
  cat <<EOF

  [[target.lun]]
  number = $1
  path = "$2"
  size = "32M"
  block_size = 512
  write_ack = "$3"
  direct_io = $4
  provisioning = "thin"
EOF
}

# write_config FILE LOG EXTRA: the daemon's config with twelve LUNs:
# number = 4 * policy + store kind; policy 0 writethrough, 1 writeback,
# 2 writeback with FUA writes; kind 0 file, 1 direct_io file, 2 loop,
# 3 loop --direct-io=on. STORE[n] is LUN n's path.
declare -a STORE=() POLICY_OF=()
make_stores() {
  local policy kind n path
  for policy in 0 1 2; do
    for kind in 0 1 2 3; do
      n=$((4 * policy + kind))
      case $kind in
        0 | 1) path=$TMP/lun$n.img ;;
        2) path=$(new_loop "$TMP/lun$n.img") ;;
        3) path=$(new_loop "$TMP/lun$n.img" --direct-io=on) ;;
      esac
      STORE[n]=$path
      POLICY_OF[n]=$policy
    done
  done
}
write_config() {
  local file=$1 log=$2 extra=$3 n policy direct
  {
    config_prologue "$PORT" "$TGT"
    for n in "${!STORE[@]}"; do
      policy=writethrough
      ((POLICY_OF[n] > 0)) && policy=writeback
      direct=false
      ((n % 2 == 1)) && direct=true
      lun_table "$n" "${STORE[n]}" "$policy" "$direct"
    done
    # 72 sessions at once: 6 on each LUN.
    printf '\n[limits]\nmax_sessions = 256\nmax_sessions_per_initiator = 64\n'
    printf '\n[testing]\ndurability_log = "%s"\n%s\n' "$log" "$extra"
  } >"$file"
}

url() { echo "iscsi://127.0.0.1:$PORT/$(iqn_url "$TGT")/$1"; }

# xcopy_loop LUN SECONDS OUT: EXTENDED COPY of the chaos span's start to
# COPY_DST_LBA, again and again.
xcopy_loop() {
  local lun=$1 seconds=$2 out=$3 desig end
  desig=$("$XCOPY_TOOL" "$(url "$lun")" designator | awk '/^DESIGNATOR/ {print $2}')
  [[ -n $desig ]] || {
    echo "no designator" >"$out"
    return 1
  }
  end=$((SECONDS + seconds))
  while ((SECONDS < end)); do
    "$XCOPY_TOOL" "$(url "$lun")" copy "$desig/512" "$desig/512" "$CHAOS_LBA" "$COPY_DST_LBA" \
      "$COPY_BLOCKS" >>"$out" 2>&1 || return 1
  done
}

# run_load SECONDS LUNS...: bench + durab_load + EXTENDED COPY on each LUN at
# once; waits for all and checks each finished cleanly.
run_load() {
  local seconds=$1 n pid
  shift
  declare -a pids=() what=() outs=()
  for n in "$@"; do
    local fua=()
    ((POLICY_OF[n] == 2)) && fua=(--fua)
    timeout $((seconds + 60)) "$RINGTGT_BENCH" --url "$(url "$n")" --verify --rw randwrite \
      --bs 4k --qd 8 --sessions 2 --range "$BENCH_RANGE" --runtime "$seconds" --seed "$n" \
      --quiet "${fua[@]}" --initiator-name "iqn.2025-01.com.example:bench-$n" \
      --save-state "$TMP/bench$n.state" >"$TMP/bench$n.out" 2>&1 &
    pids+=($!) what+=("bench on LUN $n") outs+=("$TMP/bench$n.out")
    timeout $((seconds + 60)) "$DURAB_LOAD" "$(url "$n")" "$CHAOS_LBA" "$CHAOS_BLOCKS" \
      "$seconds" 3 "$n" >"$TMP/load$n.out" 2>&1 &
    pids+=($!) what+=("durab_load on LUN $n") outs+=("$TMP/load$n.out")
    xcopy_loop "$n" "$seconds" "$TMP/xcopy$n.out" &
    pids+=($!) what+=("EXTENDED COPY on LUN $n") outs+=("$TMP/xcopy$n.out")
  done
  for pid in "${pids[@]}"; do bg_track "$pid"; done
  log "load running: ${#pids[@]} initiator processes"
  local i rc
  for i in "${!pids[@]}"; do
    rc=0
    wait "${pids[i]}" || rc=$?
    if ((rc != 0)); then
      tail -n 20 "${outs[i]}" >&2
      fail "${what[i]} exited with status $rc"
    fi
  done
  log "load done; a SYNCHRONIZE CACHE to each LUN"
  # Writeback: what the bench was told is owed only after a SYNCHRONIZE
  # CACHE, so one goes to each LUN once every writer is done.
  in_parallel sync "$DURAB_LOAD" "%URL%" "$CHAOS_LBA" "$CHAOS_BLOCKS" 0 1 0 -- "$@"
}

# in_parallel NAME CMD... -- LUNS...: CMD for every LUN at once (%URL% and
# %N% replaced), output in $TMP/NAME<n>.out; each must exit 0.
in_parallel() {
  local name=$1 n i rc
  shift
  declare -a cmd=() pids=() luns=()
  while [[ $1 != -- ]]; do
    cmd+=("$1")
    shift
  done
  shift
  for n in "$@"; do
    local args=("${cmd[@]//%URL%/$(url "$n")}")
    args=("${args[@]//%N%/$n}")
    "${args[@]}" >"$TMP/$name$n.out" 2>&1 &
    pids+=($!) luns+=("$n")
    bg_track "$!"
  done
  for i in "${!pids[@]}"; do
    rc=0
    wait "${pids[i]}" || rc=$?
    if ((rc != 0)); then
      tail -n 20 "$TMP/$name${luns[i]}.out" >&2
      fail "$name on LUN ${luns[i]} exited with status $rc"
    fi
  done
}

make_stores
LUNS=("${!STORE[@]}")

# ---------------------------------------------------------------- the honest daemon
write_config "$TMP/ringtgt.toml" "$TMP/durability.log" ""
start_daemon "$TMP/ringtgt.toml" "$PORT"
expect_grep 'TESTING: recording every write' "$DAEMON_LOG" "the seam warns loudly"
log "load: ${LOAD_S}s on ${#LUNS[@]} LUNs (bench, durab_load, EXTENDED COPY each)"
run_load "$LOAD_S" "${LUNS[@]}"

declare -a BENCH_ARGS=()
for n in "${LUNS[@]}"; do
  expect_grep '^errors: 0 ' "$TMP/bench$n.out" "bench on LUN $n: no errors"
  expect_grep 'verify: [0-9]+ blocks checked, 0 failures' "$TMP/bench$n.out" "LUN $n"
  # Every kind of medium-changing command got GOOD at least once.
  for op in write6 write10 write12 write16_fua write_verify10 write_verify16 write_same \
    write_same_zero write_same_unmap unmap compare_and_write sync10 sync16; do
    expect_grep " $op=[1-9]" "$TMP/load$n.out" "LUN $n: $op answered GOOD"
  done
  expect_grep 'XCOPY GOOD' "$TMP/xcopy$n.out" "LUN $n: EXTENDED COPY answered GOOD"
  expect_no_grep 'XCOPY (CHECK|STATUS)' "$TMP/xcopy$n.out" "LUN $n: every EXTENDED COPY GOOD"
  BENCH_ARGS+=(--bench "${STORE[n]}=$TMP/bench$n.state:2")
done
# What the bench itself reads back agrees with its table.
in_parallel reread timeout 60 "$RINGTGT_BENCH" --url %URL% --verify-only --range "$BENCH_RANGE" \
  --load-state "$TMP/bench%N%.state" --quiet --initiator-name "iqn.2025-01.com.example:reread-%N%" \
  -- "${LUNS[@]}"
stop_daemon_ok
expect_grep "durability log $TMP/durability.log written" "$DAEMON_LOG"

log "checking $(stat -c %s "$TMP/durability.log") bytes of durability log"
# DURABILITY_KEEP_DIR=DIR keeps the log and the bench tables for a closer look.
if [[ -n ${DURABILITY_KEEP_DIR:-} ]]; then
  mkdir -p "$DURABILITY_KEEP_DIR"
  cp "$TMP/durability.log" "$TMP"/bench*.state "$DURABILITY_KEEP_DIR/"
fi
run_ok "$TMP/check.out" "$DURABILITY_CHECK" "$TMP/durability.log" "${BENCH_ARGS[@]}"
cat "$TMP/check.out"
expect_grep '^OK: every acknowledged write survives' "$TMP/check.out"
# The log saw the load: all twelve stores, and every kind of event.
for n in "${LUNS[@]}"; do
  expect_grep "^store [0-9]+: ${STORE[n]} .*, 0 violations\$" "$TMP/check.out" "LUN $n is in the log"
  expect_grep "^bench ${STORE[n]}: [0-9]+ blocks, [1-9][0-9]* acknowledged, 0 not as" \
    "$TMP/check.out" "LUN $n: the durable image is what the bench expects"
done
expect_grep ' [1-9][0-9]* writes, [1-9][0-9]* unmaps/zeroings, [1-9][0-9]* flushes, [1-9][0-9]* GOOD for medium-changing commands, [1-9][0-9]* durability promises, [1-9][0-9]* SYNCHRONIZE CACHE, [1-9][0-9]* image points' \
  "$TMP/check.out" "every kind of event was recorded and checked"

# ---------------------------------------------------------------- acks before the flush
# The same load, briefly, with GOOD sent from the page cache: the checker
# must see it on every kind of store (O_DIRECT without RWF_DSYNC leaves the
# data in the device's cache, which is what a loop device's page cache is).
write_config "$TMP/broken.toml" "$TMP/broken.log" "ack_before_flush = true"
start_daemon "$TMP/broken.toml" "$PORT"
expect_grep 'ack_before_flush: durable writes are acknowledged BEFORE' "$DAEMON_LOG"
run_load 2 0 1 2 3 8 11
stop_daemon_ok
run_fails "$TMP/broken-check.out" "$DURABILITY_CHECK" "$TMP/broken.log"
expect_grep '^VIOLATION event [0-9]+: .*acknowledged as durable before any flush covered it' \
  "$TMP/broken-check.out" "the checker names the early acknowledgement"
expect_grep '^VIOLATION event [0-9]+: GOOD sent for command [0-9]+ while its write' \
  "$TMP/broken-check.out" "the checker names the early GOOD"
expect_grep '^FAILED: a power cut can lose acknowledged writes' "$TMP/broken-check.out"
# On every kind of store: file, direct_io file, loop device, loop device with
# direct I/O (writethrough), and FUA writes on a writeback file and device.
for n in 0 1 2 3 8 11; do
  expect_grep "^store [0-9]+: ${STORE[n]} .*, [1-9][0-9]* violations\$" "$TMP/broken-check.out" \
    "the early acknowledgements on LUN $n are caught"
done
log "the checker caught the broken acknowledgement order: $(grep -c '^VIOLATION' "$TMP/broken-check.out") violation lines"
