#!/usr/bin/env bash
# ENOSPC without injection (issue 12): a LUN on a loop block device over a
# sparse 32 MiB file on a 4 MiB tmpfs, the way a thin volume runs out of
# space. Writes succeed until the tmpfs is full; then the initiator hears
# DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT (07h/27h/07h) with the
# LBA, and qemu-io ENOSPC; reads keep working; once blocks are unmapped
# (discard, which punches holes in the backing file) writes work again.
# Needs root (mount, losetup).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${FAULT_TOOL:?FAULT_TOOL must name the fault_tool binary (tests/tools/fault_tool.c)}"
: "${RINGTGTCTL:?RINGTGTCTL must name the ringtgtctl binary}"
command -v jq >/dev/null || fail "jq is missing (scripts/deps.sh installs it)"
command -v qemu-io >/dev/null || fail "qemu-io is missing (apt install qemu-utils qemu-block-extra)"
command -v losetup >/dev/null || fail "losetup is missing (util-linux)"
(($(id -u) == 0)) || fail "needs root: it mounts a tmpfs and sets up a loop device"

SMALL=$TMP/small
LOOP=""
loop_cleanup() {
  # The daemon first: it holds the loop device open.
  if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -KILL "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  DAEMON_PID=""
  [[ -n $LOOP ]] && losetup -d "$LOOP" 2>/dev/null
  mountpoint -q "$SMALL" && umount "$SMALL"
  return 0
}
trap 'rc=$?; loop_cleanup; (exit $rc); _lib_on_exit' EXIT

mkdir -p "$SMALL"
mount -t tmpfs -o size=4M tmpfs "$SMALL"
truncate -s 32M "$SMALL/backing.img"
LOOP=$(losetup --find --show "$SMALL/backing.img")
log "LUN on $LOOP over a 32 MiB sparse file on a 4 MiB tmpfs"

TGT=iqn.2025-01.com.example:thin
PORT=$(pick_port)
CFG=$TMP/loop.toml
URL="iscsi://127.0.0.1:$PORT/$TGT/0"
{
  config_prologue "$PORT" "$TGT"
  cat <<EOF

  [[target.lun]]
  number = 0
  path = "$LOOP"
  block_size = 512
EOF
} >"$CFG"
ctl() { "$RINGTGTCTL" --socket "$TMP/admin.sock" "$@"; }

start_daemon "$CFG" "$PORT"
expect_no_grep 'fault_injection' "$DAEMON_LOG" "no injection in this test"
# Without [testing] fault_injection nothing can be injected.
run_fails "$TMP/refused.out" ctl fault inject --target "$TGT" --lun 0 --fault eio
expect_grep 'fault injection is off: it needs \[testing\] fault_injection = true' "$TMP/refused.out"

# 4 KiB writes, each one page of the tmpfs: the first that finds no page fails whole.
run_ok "$TMP/fill.out" "$FAULT_TOOL" "$URL" fill:0:8:4096 read:0:8
good=$(sed -n 's/^fill 0 8: \([0-9]*\) GOOD$/\1/p' "$TMP/fill.out")
[[ -n $good ]] || fail "no fill summary in $TMP/fill.out"
((good > 512 && good <= 1024)) || fail "expected 513..1024 4 KiB writes to fit in 4 MiB, got $good"
lba=$((good * 8))
expect_grep "^write $lba 8: CHECK CONDITION key 0x07 asc 0x27 ascq 0x07 info $lba\$" "$TMP/fill.out" \
  "the write that found no space"
expect_grep '^read 0 8: GOOD$' "$TMP/fill.out" "reads after ENOSPC"

qemu-io -f raw -c "write -P 0x11 20M 4k" -c "read -P 0 24M 4k" "$URL" >"$TMP/qemu.out" 2>&1 || true
expect_grep '^write failed: No space left on device' "$TMP/qemu.out" "qemu-io sees ENOSPC"
expect_grep '^read [0-9]' "$TMP/qemu.out" "qemu-io reads an unwritten block"

ctl --json lun stats --target "$TGT" >"$TMP/stats.json"
errs=$(jq ".[0].errors.data_protect // 0" "$TMP/stats.json")
((errs >= 2)) || fail "expected >= 2 data_protect errors counted, got $errs"

# Space comes back when blocks are unmapped: the loop device punches holes in its file.
qemu-io -f raw -c "discard 0 2M" -c "write -P 0x22 20M 4k" -c "read -P 0x22 20M 4k" "$URL" \
  >"$TMP/after.out" 2>&1 || true
if grep -Eq 'failed|error' "$TMP/after.out"; then
  cat "$TMP/after.out" >&2
  fail "writes after freeing space"
fi
expect_eq "$(grep -c '^read [0-9]' "$TMP/after.out")" 1 "verified read after freeing space"
stop_daemon_ok
