#!/usr/bin/env bash
# A reload that replaces a mirrored LU (docs/replication.md, "Reloading a
# mirrored LUN"), checked by real initiators (qemu-io, ringtgt-bench
# --verify), the log, ringtgtctl and cmp:
# - a changed key of the LUN (resync_rate) while qemu-io writes, with
#   ack_quorum every copy: the new LU takes the state file over from the one
#   still serving; its hot regions are writes in flight there, not a crash's,
#   so no copy goes out of sync, no write is refused, none is lost, and the
#   copies compare equal;
# - the same with resync_region_size changed (256K to 1M): the new LU maps
#   the file's bitmaps and hot regions onto its own grid, no full sync;
# - a copy added by a reload (ack_quorum 2 of 3) while the initiator writes:
#   the new copy is synced in full by itself, rejoins, and compares equal;
# - a reload refused after it opened the LU's replacement (another LUN's path
#   cannot be opened): the LU serves on and keeps its state file, and a
#   restart after a clean stop finds no hot region to resync.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${RINGTGTCTL:?RINGTGTCTL must name the ringtgtctl binary}"
: "${RINGTGT_BENCH:=$(dirname "$RINGTGT_BIN")/bench/ringtgt-bench}"
[[ -x $RINGTGT_BENCH ]] || fail "RINGTGT_BENCH=$RINGTGT_BENCH is not executable"

TGT=iqn.2025-01.com.example:reload
PORT=$(pick_port)
CFG=$TMP/reload.toml
URL="iscsi://127.0.0.1:$PORT/$TGT/0"
P=$TMP/lun0.img
C2=$TMP/lun0-disk2.img
C3=$TMP/lun0-disk3.img

REGION=256K
# write_config RESYNC_RATE [QUORUM THIRD_COPY_PATH [EXTRA_LUN_PATH]]: with
# resync_region_size REGION.
write_config() {
  {
    config_prologue "$PORT" "$TGT"
    cat <<EOF

  [[target.lun]]
  number = 0
  path = "$P"
  size = "16M"
  block_size = 512
  resync_region_size = "$REGION"
  resync_rate = "$1"
EOF
    [[ -n ${2:-} ]] && echo "  ack_quorum = $2"
    cat <<EOF
    [[target.lun.copy]]
    name = "disk2"
    path = "$C2"
EOF
    [[ -n ${3:-} ]] && cat <<EOF
    [[target.lun.copy]]
    name = "disk3"
    path = "$3"
EOF
    [[ -n ${4:-} ]] && cat <<EOF

  [[target.lun]]
  number = 1
  path = "$4"
  size = "1M"
EOF
    cat <<EOF

[iscsi]
nop_interval = 0
EOF
  } >"$CFG"
}

ctl() { "$RINGTGTCTL" --socket "$TMP/admin.sock" "$@"; }

# writes_started OUT PATTERN: 8 MiB of PATTERN at 4 MiB in the background,
# under way once disk2 took some (qemu_writes_started).
writes_started() { qemu_writes_started "$1" "$URL" disk2 "$2" 4M; }
# writes_ok OUT PATTERN WHAT: the background writes all succeeded and read back.
writes_ok() {
  qemu_writes_ok "$1" "$3"
  qemu_ok "$TMP/readback.out" "$URL" "read -P $2 4M 8M"
}

write_config 100M
start_daemon "$CFG" "$PORT"
verified_load "$URL" 2M 2 --save-state "$TMP/gen.bin"

# --- a changed key: the LU replaced under writes, every copy stays in sync ------------------
log "reload with resync_rate changed while qemu-io writes (ack_quorum: every copy)"
writes_started "$TMP/w1.out" 0x5c
write_config 80M
run_ok "$TMP/reload1.out" ctl reload
expect_grep "LUN 0: backing changed \(its copies or mirror settings\): replaced" "$TMP/reload1.out" \
  "the reload's answer"
writes_ok "$TMP/w1.out" 0x5c "across the reload that replaced the LU"
expect_no_grep "out of sync|did not stop cleanly|lost its write quorum" "$DAEMON_LOG" \
  "the log of a reload that replaced a mirrored LU"
expect_eq "$(copy_field disk2 state)" in_sync "disk2 after the reload"
expect_eq "$(copy_field disk2 dirty_bytes)" 0 "disk2's dirty bytes after the reload"
same_bytes "$P" "$C2" "after the reload, copy disk2"
verified_load "$URL" 2M 2 --load-state "$TMP/gen.bin" --save-state "$TMP/gen.bin"

# --- another resync_region_size: the bitmaps and hot regions mapped onto the new grid ----------
log "reload with resync_region_size 256K -> 1M while qemu-io writes (ack_quorum: every copy)"
writes_started "$TMP/w1b.out" 0x5b
REGION=1M
write_config 80M
run_ok "$TMP/reload1b.out" ctl reload
expect_grep "LUN 0: backing changed \(its copies or mirror settings\): replaced" "$TMP/reload1b.out" \
  "the reload's answer"
writes_ok "$TMP/w1b.out" 0x5b "across the reload that changed resync_region_size"
expect_no_grep "out of sync|did not stop cleanly|lost its write quorum|a full sync" "$DAEMON_LOG" \
  "the log of a reload that changed resync_region_size"
expect_eq "$(copy_field disk2 state)" in_sync "disk2 after the region size changed"
expect_eq "$(copy_field disk2 region_size)" 1048576 "disk2's region size after the reload"
same_bytes "$P" "$C2" "after the reload that changed resync_region_size, copy disk2"

# --- a copy added: synced in full by itself ---------------------------------------------------
log "reload adding copy disk3 (ack_quorum 2 of 3) while qemu-io writes"
writes_started "$TMP/w2.out" 0x5d
write_config 80M 2 "$C3"
run_ok "$TMP/reload2.out" ctl reload
wait_grep "copy disk3 of target $TGT LUN 0 out of sync at start: a copy the state file does not know: a full sync" \
  "$DAEMON_LOG" "the new copy's full sync" 10
wait_grep "resuming the resync of copy disk3" "$DAEMON_LOG" "the new copy's resync started by itself" 10
writes_ok "$TMP/w2.out" 0x5d "across the reload that added a copy"
wait_state disk3 in_sync 60
(($(copy_field disk3 resynced_bytes) >= 16 << 20)) ||
  fail "disk3's full sync copied $(copy_field disk3 resynced_bytes) bytes, not the whole LUN"
same_bytes "$P" "$C3" "after the reload that added it, copy disk3"
same_bytes "$P" "$C2" "after the reload that added disk3, copy disk2"
expect_no_grep "copy disk2 .*out of sync" "$DAEMON_LOG" "disk2 across both reloads"
verify_acked "$URL" "$TMP/gen.bin" "after both reloads"

# --- a reload refused after the replacement opened: the LU keeps its file ---------------------
log "a reload refused after it opened LUN 0's replacement"
write_config 90M 2 "$C3" "$TMP/no-such-dir/lun1.img"
run_fails "$TMP/reload3.out" ctl reload
expect_grep "LUN 1: cannot open $TMP/no-such-dir/lun1.img" "$TMP/reload3.out" "the refusal"
# Opened (and dropped): LUN 0's fifth "mirrored to" line, after start and three reloads.
expect_eq "$(grep -c "LUN 0: .* mirrored to" "$DAEMON_LOG")" 5 "LUN 0's openings"
writes_started "$TMP/w3.out" 0x5e
writes_ok "$TMP/w3.out" 0x5e "after the refused reload"
for c in disk2 disk3; do expect_eq "$(copy_field $c state)" in_sync "$c after the refused reload"; done
kill -0 "$DAEMON_PID" || fail "the daemon died"
stop_daemon_ok
same_bytes "$P" "$C2" "after the refused reload, copy disk2"
same_bytes "$P" "$C3" "after the refused reload, copy disk3"
write_config 80M 2 "$C3"
start_daemon "$CFG" "$PORT"
expect_no_grep "did not stop cleanly|out of sync at start" "$DAEMON_LOG" \
  "the restart after a clean stop that followed the refused reload"
verify_acked "$URL" "$TMP/gen.bin" "after the restart"
stop_daemon_ok
log "PASS"
