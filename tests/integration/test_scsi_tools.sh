#!/usr/bin/env bash
# SCSI identity and geometry through libiscsi's tools: standard INQUIRY, VPD
# pages 0x00/0x80/0x83/0xb0 (serials stable across a restart, distinct per
# LUN, configured serial honoured), READ CAPACITY(16) for 512 and 4096 bytes.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

PORT=$(pick_port)
TGT=iqn.2025-01.com.example:scsi
URL=iscsi://127.0.0.1:$PORT/$TGT
cat >"$TMP/ringtgt.toml" <<EOF
workers = 1
log_level = "info"
state_dir = "$TMP/state"

[[portal]]
listen = "127.0.0.1:$PORT"

[[target]]
name = "$TGT"

  [[target.lun]]
  number = 0
  path = "$TMP/lun0.img"
  size = "48M"
  block_size = 512

  [[target.lun]]
  number = 1
  path = "$TMP/lun1.img"
  size = "40M"
  block_size = 4096

  [[target.lun]]
  number = 2
  path = "$TMP/lun2.img"
  size = "1M"
  serial = "MYSERIAL-0042"
  read_only = true
EOF

# identity OUT: VPD pages 0x80 and 0x83 of LUNs 0 and 1 (compared across restarts).
identity() {
  local out=$1 lun page
  : >"$out"
  for lun in 0 1; do
    for page in 128 131; do
      run_ok "$TMP/vpd.txt" iscsi-inq -e 1 -c "$page" "$URL/$lun"
      echo "== LUN $lun page $page" >>"$out"
      cat "$TMP/vpd.txt" >>"$out"
    done
  done
}

# A read-only LUN is not created by the daemon: make its file first.
truncate -s 1M "$TMP/lun2.img"
start_daemon "$TMP/ringtgt.toml" "$PORT"

log "standard INQUIRY"
run_ok "$TMP/inq.txt" iscsi-inq "$URL/0"
expect_grep '^Peripheral Device Type:DIRECT_ACCESS$' "$TMP/inq.txt" "disk device type"
expect_grep '^Vendor:RINGTGT *$' "$TMP/inq.txt" "T10 vendor RINGTGT"
expect_grep '^Product:.+' "$TMP/inq.txt" "a product id"
expect_grep '^CmdQue:1$' "$TMP/inq.txt" "command queueing"

log "VPD 0x00 lists the pages"
run_ok "$TMP/vpd0.txt" iscsi-inq -e 1 -c 0 "$URL/0"
for p in '0x00 SUPPORTED_VPD_PAGES' '0x80 UNIT_SERIAL_NUMBER' '0x83 DEVICE_IDENTIFICATION' \
  '0xb0 BLOCK_LIMITS'; do
  expect_grep "^Page:$p\$" "$TMP/vpd0.txt" "supported VPD page $p"
done

log "VPD 0x80 / 0x83"
identity "$TMP/id_before.txt"
s0=$(sed -n '/^== LUN 0 page 128/,/^==/s/^Unit Serial Number:\[\(.*\)\]$/\1/p' "$TMP/id_before.txt")
s1=$(sed -n '/^== LUN 1 page 128/,/^==/s/^Unit Serial Number:\[\(.*\)\]$/\1/p' "$TMP/id_before.txt")
[[ -n $s0 && -n $s1 ]] || { cat "$TMP/id_before.txt" >&2; fail "expected a Unit Serial Number for LUNs 0 and 1"; }
[[ $s0 != "$s1" ]] || fail "LUNs 0 and 1 share the serial '$s0', expected distinct serials"
expect_grep '^Designator Type:\(3\) NAA$' "$TMP/id_before.txt" "an NAA designator in VPD 0x83"
expect_grep "^Designator:\\[RINGTGT +$s0\\]\$" "$TMP/id_before.txt" "T10 vendor id designator with LUN 0's serial"
run_ok "$TMP/vpd80_2.txt" iscsi-inq -e 1 -c 128 "$URL/2"
expect_grep '^Unit Serial Number:\[MYSERIAL-0042\]$' "$TMP/vpd80_2.txt" "the configured serial of LUN 2"

log "VPD 0xb0 block limits"
run_ok "$TMP/vpdb0.txt" iscsi-inq -e 1 -c 176 "$URL/0"
expect_grep '^maximum transfer length:[1-9][0-9]*$' "$TMP/vpdb0.txt" "a non-zero maximum transfer length"
expect_grep '^optimal transfer length granularity:[0-9]+$' "$TMP/vpdb0.txt" "optimal transfer length granularity"

log "READ CAPACITY(16)"
run_ok "$TMP/rc0.txt" iscsi-readcapacity16 "$URL/0"
expect_grep '^RETURNED LOGICAL BLOCK ADDRESS:98303$' "$TMP/rc0.txt" "48 MiB / 512 - 1"
expect_grep '^LOGICAL BLOCK LENGTH IN BYTES:512$' "$TMP/rc0.txt" "512-byte blocks"
expect_grep '^Total size:50331648$' "$TMP/rc0.txt" "48 MiB"
run_ok "$TMP/rc1.txt" iscsi-readcapacity16 "$URL/1"
expect_grep '^RETURNED LOGICAL BLOCK ADDRESS:10239$' "$TMP/rc1.txt" "40 MiB / 4096 - 1"
expect_grep '^LOGICAL BLOCK LENGTH IN BYTES:4096$' "$TMP/rc1.txt" "4096-byte blocks"
expect_grep '^Total size:41943040$' "$TMP/rc1.txt" "40 MiB"

log "a read-only LUN refuses writes"
if command -v qemu-io >/dev/null; then
  run_fails "$TMP/ro.txt" qemu-io -f raw -c 'write -P 0x11 0 512' "$URL/2"
  run_ok "$TMP/ro_read.txt" qemu-io -f raw -r -c 'read -P 0 0 512' "$URL/2"
fi

log "serials survive a restart"
stop_daemon_ok
start_daemon "$TMP/ringtgt.toml" "$PORT"
identity "$TMP/id_after.txt"
if ! diff -u "$TMP/id_before.txt" "$TMP/id_after.txt" >"$TMP/id.diff"; then
  cat "$TMP/id.diff" >&2
  fail "VPD 0x80/0x83 changed across a daemon restart, expected identical output"
fi
stop_daemon_ok
