#!/usr/bin/env bash
# A copy's store replaced (issue 11; docs/replication.md, "Replacing a copy's
# store"), checked by real initiators (ringtgt-bench --verify) and cmp:
# - `ringtgtctl copy replace` while an initiator writes: the old store is
#   closed (the daemon holds no deleted file), the new one at the copy's path
#   gets a full sync, and the copies compare equal; every acknowledged block
#   reads back from the new store alone;
# - the primary's store replaced the same way, filled from the other copy;
# - refusals: the last copy in sync, an unknown copy;
# - a copy whose path changed in the config between two runs is a new store:
#   out of sync at start, and synced in full.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${RINGTGTCTL:?RINGTGTCTL must name the ringtgtctl binary}"
: "${RINGTGT_BENCH:=$(dirname "$RINGTGT_BIN")/bench/ringtgt-bench}"
[[ -x $RINGTGT_BENCH ]] || fail "RINGTGT_BENCH=$RINGTGT_BENCH is not executable"

TGT=iqn.2025-01.com.example:replace
PORT=$(pick_port)
CFG=$TMP/replace.toml
URL="iscsi://127.0.0.1:$PORT/$TGT/0"
P=$TMP/lun0.img
C=$TMP/lun0-disk2.img
SIZE=$((16 << 20))

# write_config COPY_PATH
write_config() {
  {
    config_prologue "$PORT" "$TGT"
    cat <<EOF

  [[target.lun]]
  number = 0
  path = "$P"
  size = "16M"
  block_size = 512
  ack_quorum = 1
  resync_region_size = "256K"
    [[target.lun.copy]]
    name = "disk2"
    path = "$1"

[iscsi]
nop_interval = 0
EOF
  } >"$CFG"
}

ctl() { "$RINGTGTCTL" --socket "$TMP/admin.sock" "$@"; }
verify_all() { verify_acked "$URL" "$TMP/gen.bin" "$1"; }
# deleted_files: the files the daemon holds open that were unlinked.
deleted_files() { find "/proc/$DAEMON_PID/fd" -lname '* (deleted)' 2>/dev/null | wc -l; }
# wait_no_deleted_files WHAT: the daemon closes the old store soon after the answer.
wait_no_deleted_files() {
  local i
  for ((i = 0; i < 100; i++)); do
    (($(deleted_files) == 0)) && return 0
    sleep 0.1
  done
  ls -l "/proc/$DAEMON_PID/fd" >&2
  fail "$1: the daemon still holds an unlinked store open"
}
# replace_under_load COPY STORE: copy replace of COPY (whose old file STORE
# was unlinked) while a verified load writes; then the full sync.
replace_under_load() {
  local copy=$1 store=$2
  # Mid-write: once the copy has taken writes of this load.
  load_started "$copy" 3
  rm -f "$store"
  ctl copy replace --target "$TGT" --lun 0 --copy "$copy" >"$TMP/replace.out" ||
    fail "copy replace of $copy failed: $(cat "$TMP/replace.out")"
  expect_grep "store: $store; full sync: started" "$TMP/replace.out" "copy replace's answer"
  load_ok "the replacement"
  wait_state "$copy" in_sync
  expect_grep "copy $copy of target $TGT LUN 0: store replaced by .*: every region is dirty \($SIZE bytes, a full sync\)" \
    "$DAEMON_LOG" "the replacement's log line"
  local resynced
  resynced=$(copy_field "$copy" resynced_bytes)
  ((resynced >= SIZE)) || fail "only $resynced bytes copied onto the new store of $copy (a full sync is $SIZE)"
  wait_no_deleted_files "after the replacement of $copy"
}

write_config "$C"
start_daemon "$CFG" "$PORT"
log "a verified load while both copies are in sync"
verified_load "$URL" 2M 1 --save-state "$TMP/gen.bin"
same_bytes "$P" "$C" "after the first load, disk2"

# --- refusals ------------------------------------------------------------------------------------
run_fails "$TMP/r1.out" ctl copy replace --target "$TGT" --lun 0 --copy nosuch
expect_grep "has no copy nosuch \(primary, disk2\)" "$TMP/r1.out"
ctl copy fail --target "$TGT" --lun 0 --copy disk2 >/dev/null
run_fails "$TMP/r2.out" ctl copy replace --target "$TGT" --lun 0 --copy primary
expect_grep "copy primary is the last copy of target $TGT LUN 0 in sync" "$TMP/r2.out"
expect_eq "$(copy_field primary state)" in_sync "the primary after a refused replacement"
ctl copy resync --target "$TGT" --lun 0 --copy disk2 >/dev/null
wait_state disk2 in_sync

# read_back_from_alone COPY OTHER WHAT: every acknowledged block reads back
# from COPY with OTHER taken out; then OTHER is resynced.
read_back_from_alone() {
  ctl copy fail --target "$TGT" --lun 0 --copy "$2" >/dev/null
  verify_all "$3"
  ctl copy resync --target "$TGT" --lun 0 --copy "$2" >/dev/null
  wait_state "$2" in_sync
}

# --- a new store for disk2, then for the primary ---------------------------------------------------
log "copy replace disk2 (its file unlinked, a new one made at its path) under writes"
replace_under_load disk2 "$C"
same_bytes "$P" "$C" "after the replacement, the new disk2"
read_back_from_alone disk2 primary "read from the new disk2 alone"

log "copy replace primary under writes: filled from disk2, reads from disk2 meanwhile"
replace_under_load primary "$P"
same_bytes "$P" "$C" "after the primary's replacement"
read_back_from_alone primary disk2 "read from the new primary alone"
stop_daemon_ok

# --- a copy whose path changed between two runs --------------------------------------------------
log "disk2 moved to another path in the config: a full sync at start"
C2=$TMP/lun0-disk2-new.img
truncate -s "$SIZE" "$C2"
write_config "$C2"
start_daemon "$CFG" "$PORT"
expect_grep "copy disk2 of target $TGT LUN 0 out of sync at start: its store moved from $C to $C2: a new store, a full sync \($SIZE bytes to resync\)" \
  "$DAEMON_LOG" "the moved copy's line"
wait_state disk2 in_sync
same_bytes "$P" "$C2" "after the moved copy's full sync"
ctl copy fail --target "$TGT" --lun 0 --copy primary >/dev/null
verify_all "read from the moved disk2 alone"
kill -0 "$DAEMON_PID" || fail "the daemon died"
stop_daemon_ok
log "PASS"
