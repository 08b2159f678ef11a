#!/usr/bin/env bash
# Resynchronisation of a mirrored LUN's local copy (issue 11, second slice;
# docs/replication.md, "Resynchronisation"), driven by ringtgtctl copy and
# checked by real initiators (ringtgt-bench --verify) and cmp:
# - resync_region_size is validated with file:line:col;
# - `copy fail` takes a copy out; the writes it misses mark only their regions
#   (dirty bytes far below the LUN's size, in copy list and /metrics);
# - `copy resync` copies exactly the dirty regions and the copy rejoins: the
#   files compare equal byte for byte, and every acknowledged block reads back
#   from the resynchronised copy alone (the primary taken out);
# - a resync running while the initiator writes to the same regions loses no
#   write: afterwards the copies compare equal and the blocks read back.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${RINGTGTCTL:?RINGTGTCTL must name the ringtgtctl binary}"
: "${RINGTGT_BENCH:=$(dirname "$RINGTGT_BIN")/bench/ringtgt-bench}"
[[ -x $RINGTGT_BENCH ]] || fail "RINGTGT_BENCH=$RINGTGT_BENCH is not executable"
command -v curl >/dev/null || fail "curl is missing (scripts/deps.sh installs it)"

TGT=iqn.2025-01.com.example:resync
PORT=$(pick_port)
MPORT=$(pick_port)
CFG=$TMP/resync.toml
CHECK="python3 $RINGTGT_SRC/tests/integration/metrics_check.py"
URL="iscsi://127.0.0.1:$PORT/$TGT/0"
P=$TMP/lun0.img
C=$TMP/lun0-disk2.img
SIZE=$((64 << 20))
REGION=$((256 << 10))

{
  config_prologue "$PORT" "$TGT"
  cat <<EOF

  [[target.lun]]
  number = 0
  path = "$P"
  size = "64M"
  block_size = 512
  ack_quorum = 1
  resync_region_size = "256K"
  resync_rate = "512K"
    [[target.lun.copy]]
    name = "disk2"
    path = "$C"

[iscsi]
nop_interval = 0

[metrics]
listen = "127.0.0.1:$MPORT"
EOF
} >"$CFG"

ctl() { "$RINGTGTCTL" --socket "$TMP/admin.sock" "$@"; }
scrape() { curl -fsS --max-time 5 "http://127.0.0.1:$MPORT/metrics" -o "$TMP/m.txt" || fail "GET /metrics failed"; }
metric() { $CHECK "$TMP/m.txt" value "$1" || fail "no sample $1 in /metrics"; }
L="target=\"$TGT\",lun=\"0\""
# verify_all WHAT: every block of the first 2 MiB holds its last acknowledged write.
verify_all() { verify_acked "$URL" "$TMP/gen.bin" "$1"; }

# --- config validation ---------------------------------------------------------------
sed 's/^  resync_region_size = "256K"$/  resync_region_size = "100K"/' "$CFG" >"$TMP/bad.toml"
line=$(grep -n '^  resync_region_size = "100K"$' "$TMP/bad.toml" | cut -d: -f1)
[[ -n $line ]] || fail "the bad config has no resync_region_size line"
rc=0
"$RINGTGT_BIN" --check-config --config "$TMP/bad.toml" >"$TMP/bad.out" 2>&1 || rc=$?
expect_eq "$rc" 1 "--check-config exit status for resync_region_size = 100K"
expect_grep "$TMP/bad.toml:$line:24: resync_region_size must be a power of two from block_size \(512\) to 1GiB, not 102400" \
  "$TMP/bad.out" "the bad resync_region_size's error"

start_daemon "$CFG" "$PORT"
expect_eq "$(copy_field disk2 state)" in_sync "disk2 at start"

log "a verified load while both copies are in sync"
verified_load "$URL" 2M 2 --save-state "$TMP/gen.bin"
same_bytes "$P" "$C" "after the first load, disk2"

# --- copy fail: only the regions written meanwhile are dirty -------------------------------
log "copy fail disk2, then writes to the first 2 MiB"
ctl copy fail --target "$TGT" --lun 0 --copy disk2 >/dev/null
expect_eq "$(copy_field disk2 state)" out_of_sync "disk2 after copy fail"
expect_grep "copy disk2 of target $TGT LUN 0 out of sync: taken out by ringtgtctl copy fail" "$DAEMON_LOG"
expect_eq "$(copy_field disk2 dirty_bytes)" 0 "dirty bytes before any write"
verified_load "$URL" 2M 2 --load-state "$TMP/gen.bin" --save-state "$TMP/gen.bin"
dirty=$(copy_field disk2 dirty_bytes)
log "dirty: $dirty of $SIZE bytes"
((dirty > 0 && dirty <= 2 << 20 && dirty % REGION == 0)) ||
  fail "dirty bytes $dirty: not whole regions within the 2 MiB written"
scrape
expect_eq "$(metric "ringtgt_lun_copy_dirty_bytes{$L,copy=\"disk2\"}")" "$dirty" "dirty bytes in /metrics"
expect_eq "$(metric "ringtgt_lun_copy_state{$L,copy=\"disk2\",state=\"out_of_sync\"}")" 1 "disk2's state metric"
expect_eq "$(metric "ringtgt_lun_copies_in_sync{$L}")" 1 "copies in sync"
cmp -s "$P" "$C" && fail "disk2 holds the writes it missed"
# Resync refused while the copy is in sync, and for an unknown copy.
run_fails "$TMP/r1.out" ctl copy resync --target "$TGT" --lun 0 --copy primary
expect_grep "copy primary is in_sync, not out_of_sync" "$TMP/r1.out"
run_fails "$TMP/r2.out" ctl copy resync --target "$TGT" --lun 0 --copy nosuch
expect_grep "has no copy nosuch \(primary, disk2\)" "$TMP/r2.out"

# --- copy resync: exactly the dirty regions, then in sync ------------------------------------
log "copy resync disk2"
ctl copy resync --target "$TGT" --lun 0 --copy disk2 >/dev/null
wait_state disk2 in_sync
expect_eq "$(copy_field disk2 resynced_bytes)" "$dirty" "bytes resynced (only the dirty regions)"
expect_eq "$(copy_field disk2 dirty_bytes)" 0 "dirty bytes after the resync"
expect_grep "copy disk2 of target $TGT LUN 0: resync done: $dirty bytes copied" "$DAEMON_LOG"
same_bytes "$P" "$C" "after the resync, disk2"
scrape
expect_eq "$(metric "ringtgt_lun_copy_resynced_bytes_total{$L,copy=\"disk2\"}")" "$dirty" "resynced bytes in /metrics"
expect_eq "$(metric "ringtgt_lun_copies_in_sync{$L}")" 2 "copies in sync after the resync"
# Read back from disk2 alone: take the primary out.
ctl copy fail --target "$TGT" --lun 0 --copy primary >/dev/null
run_fails "$TMP/f1.out" ctl copy fail --target "$TGT" --lun 0 --copy disk2
expect_grep "copy disk2 is the last copy of target $TGT LUN 0 in sync" "$TMP/f1.out"
verify_all "read from the resynchronised disk2 alone"
ctl copy resync --target "$TGT" --lun 0 --copy primary >/dev/null
wait_state primary in_sync

# --- a resync under concurrent writes ------------------------------------------------------------
log "copy fail disk2, writes, then a resync while the initiator writes on"
ctl copy fail --target "$TGT" --lun 0 --copy disk2 >/dev/null
verified_load "$URL" 2M 2 --load-state "$TMP/gen.bin" --save-state "$TMP/gen.bin"
dirty=$(copy_field disk2 dirty_bytes)
((dirty >= 3 << 19)) || fail "only $dirty bytes dirty after 2 s of writes over 2 MiB"
# The load starts first, and the resync is asked for once it writes: they
# overlap by construction (at 512 KiB/s the resync of >= 1.5 MiB takes >= 3 s;
# the load writes for 8 s, room for a slow start on a loaded machine).
load_started primary 8
ctl copy resync --target "$TGT" --lun 0 --copy disk2 >/dev/null
kill -0 "$BENCH" 2>/dev/null || fail "the load ended before the resync started: they did not overlap"
load_ok "the resync"
wait_state disk2 in_sync
same_bytes "$P" "$C" "after the resync under writes, disk2"
ctl copy fail --target "$TGT" --lun 0 --copy primary >/dev/null
verify_all "after the resync under writes, read from disk2 alone"

kill -0 "$DAEMON_PID" || fail "the daemon died"
ctl copy resync --target "$TGT" --lun 0 --copy primary >/dev/null
wait_state primary in_sync
stop_daemon_ok

# --- restarts: the state file in state_dir -------------------------------------------------------
STATE=$(ls "$TMP"/state/mirror-*.state)
[[ -f $STATE ]] || fail "no mirror state file in state_dir"
# hot_regions: the regions the state file marks hot (writes in flight), one a line.
hot_regions() {
  python3 - "$STATE" <<'PY'
import sys
for line in open(sys.argv[1]):
    f = line.split()
    if f and f[0] == "hot":
        for w, word in enumerate(f[1:]):
            v = int(word, 16)
            for b in range(64):
                if v >> b & 1:
                    print(w * 64 + b)
PY
}
[[ -z $(hot_regions) ]] || fail "a clean stop left hot regions: $(hot_regions | tr '\n' ' ')"

log "an out-of-sync copy stays out across a clean restart, and its resync resumes"
start_daemon "$CFG" "$PORT"
expect_eq "$(copy_field disk2 state)" in_sync "disk2 after a clean restart"
ctl copy fail --target "$TGT" --lun 0 --copy disk2 >/dev/null
verified_load "$URL" 2M 1 --load-state "$TMP/gen.bin" --save-state "$TMP/gen.bin"
dirty=$(copy_field disk2 dirty_bytes)
((dirty > 0)) || fail "no dirty bytes after writes"
stop_daemon_ok
start_daemon "$CFG" "$PORT"
expect_grep "copy disk2 of target $TGT LUN 0 out of sync at start: it was out of sync when ringtgt stopped \($dirty bytes to resync\)" \
  "$DAEMON_LOG" "the restart's out-of-sync line"
expect_grep "resuming the resync of copy disk2" "$DAEMON_LOG"
wait_state disk2 in_sync
same_bytes "$P" "$C" "after the resumed resync, disk2"

log "kill -9 mid-write: the regions with writes in flight are resynchronised"
timeout 60 "$RINGTGT_BENCH" --url "$URL" --json --verify --rw randwrite --sessions 2 --qd 8 \
  --bs 4096 --runtime 20 --range 2M --load-state "$TMP/gen.bin" --save-state "$TMP/gen.bin" \
  >"$TMP/k.json" 2>"$TMP/k.err" &
BENCH=$!
bg_track "$BENCH"
# Mid-write: once disk2 has taken writes of this load.
for ((i = 0; i < 300; i++)); do
  scrape
  (($(metric "ringtgt_lun_copy_writes_total{$L,copy=\"disk2\"}") > 200)) && break
  sleep 0.1
done
kill9_daemon
wait "$BENCH" || true
mapfile -t hot < <(hot_regions)
((${#hot[@]} > 0)) || fail "kill -9 mid-write left no hot region in the state file"
log "hot regions after kill -9: ${hot[*]}"
# Make the copies differ where the log says writes were in flight (as a torn
# write would): a resync of those regions must repair it.
printf 'torn' | dd of="$C" bs=1 seek=$((hot[0] * REGION + 100)) conv=notrunc status=none
cmp -s "$P" "$C" && fail "the copies do not differ after the scribble"
start_daemon "$CFG" "$PORT"
expect_grep "did not stop cleanly: ${#hot[@]} region\(s\) had writes in flight; copy primary is their source" \
  "$DAEMON_LOG" "the crash recovery line"
wait_state disk2 in_sync
expect_grep "copy disk2 of target $TGT LUN 0: resync done: $((${#hot[@]} * REGION)) bytes copied" \
  "$DAEMON_LOG" "only the hot regions resynced"
same_bytes "$P" "$C" "after the crash recovery, disk2"
verify_all "after kill -9 and the recovery"
stop_daemon_ok
log "PASS"
