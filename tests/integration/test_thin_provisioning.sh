#!/usr/bin/env bash
# Thin provisioning end to end with QEMU's iSCSI driver (libiscsi): a discard
# on a thin LUN becomes UNMAP, the backing file loses those blocks (a hole)
# and they read back as zeroes; the same discard on a full LUN deallocates
# nothing. A read-only LUN cannot be thin: the daemon refuses the config.
# (A thin LUN on a store that cannot deallocate is refused at startup too;
# every file system here punches holes, so that case is a unit test.)
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

command -v qemu-io >/dev/null || fail "qemu-io is missing (apt install qemu-utils qemu-block-extra)"

TGT=iqn.2025-01.com.example:thin
MiB=1048576
port=$(pick_port)
thin=$TMP/thin.img
full=$TMP/full.img
{
  config_prologue "$port" "$TGT"
  cat <<CONF

  [[target.lun]]
  number = 0
  path = "$thin"
  size = "64M"
  provisioning = "thin"

  [[target.lun]]
  number = 1
  path = "$full"
  size = "64M"
  provisioning = "full"
CONF
} >"$TMP/thin.toml"
start_daemon "$TMP/thin.toml" "$port"
expect_grep "LUN 0: .*thin provisioned" "$DAEMON_LOG"
expect_grep "LUN 1: .*fully provisioned" "$DAEMON_LOG"

url() { printf 'iscsi://127.0.0.1:%s/%s/%s' "$port" "$(iqn_url "$TGT")" "$1"; }
# allocated FILE: bytes the file system holds for FILE.
allocated() { echo $(($(stat -c '%b' "$1") * 512)); }

for lun in 0 1; do
  run_ok "$TMP/w$lun.out" qemu-io -f raw -c "write -P 0x5a 0 $((8 * MiB))" "$(url $lun)"
done
sync
thin_before=$(allocated "$thin")
full_before=$(allocated "$full")
((thin_before >= 8 * MiB)) || fail "thin LUN file holds $thin_before bytes after 8 MiB written"

for lun in 0 1; do
  run_ok "$TMP/d$lun.out" qemu-io -f raw -c "discard $MiB $((4 * MiB))" "$(url $lun)"
done
sync
thin_after=$(allocated "$thin")
full_after=$(allocated "$full")
log "thin: $thin_before -> $thin_after bytes allocated; full: $full_before -> $full_after"
((thin_before - thin_after >= 4 * MiB)) ||
  fail "discard of 4 MiB on the thin LUN freed $((thin_before - thin_after)) bytes"
expect_eq "$full_after" "$full_before" "bytes allocated to the full LUN's file after a discard"

# The thin LUN reads zeroes where it was discarded and keeps the rest; the
# full LUN kept everything.
run_ok "$TMP/r0.out" qemu-io -f raw -c "read -P 0x5a 0 $MiB" -c "read -P 0 $MiB $((4 * MiB))" \
  -c "read -P 0x5a $((5 * MiB)) $((3 * MiB))" "$(url 0)"
run_ok "$TMP/r1.out" qemu-io -f raw -c "read -P 0x5a 0 $((8 * MiB))" "$(url 1)"
expect_no_grep "Pattern verification failed" "$TMP/r0.out"
expect_no_grep "Pattern verification failed" "$TMP/r1.out"
stop_daemon_ok

# A provisioning that does not exist: a config error naming file, line and
# column. (A read-only LUN may be thin: it then only reports what its image
# holds; the conformance run's read-only LU is one.)
{
  config_prologue "$port" "$TGT"
  cat <<CONF

  [[target.lun]]
  number = 3
  path = "$thin"
  read_only = true
  provisioning = "sparse"
CONF
} >"$TMP/bad.toml"
run_fails "$TMP/bad.out" timeout 10 "$RINGTGT_BIN" --config "$TMP/bad.toml"
expect_grep "bad.toml:[0-9]+:[0-9]+: provisioning \"sparse\" is not one of" "$TMP/bad.out"
log "ok"
