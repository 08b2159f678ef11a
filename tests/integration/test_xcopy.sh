#!/usr/bin/env bash
# EXTENDED COPY (LID1) between logical units with a real initiator
# (tests/tools/xcopy_tool, libiscsi): CSCD descriptors name the LUs by the NAA
# designators their VPD page 83h reports. Data copied from LUN 0 to LUN 1 of
# a target (and back, and into a LUN of 4096-byte blocks) arrives byte for
# byte; a LUN of another target the initiator may log in to is reachable; a
# LUN masked away from the initiator, a target whose ACL refuses it and a LUN
# removed live are not (COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE), and
# are left untouched.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

XCOPY_TOOL=${XCOPY_TOOL:-$(dirname "$RINGTGT_BIN")/tests/xcopy_tool}
[[ -x $XCOPY_TOOL ]] || fail "xcopy_tool not found (set XCOPY_TOOL): $XCOPY_TOOL"
RINGTGTCTL=${RINGTGTCTL:-$(dirname "$RINGTGT_BIN")/ringtgtctl}
[[ -x $RINGTGTCTL ]] || fail "ringtgtctl not found (set RINGTGTCTL): $RINGTGTCTL"

PORT=$(pick_port)
TGT=iqn.2025-01.com.example:xcopy
TGT2=iqn.2025-01.com.example:xcopy-other-target
TGT3=iqn.2025-01.com.example:xcopy-not-mine
ME=iqn.2025-01.com.example:copier
OTHER=iqn.2025-01.com.example:someone-else
url() { printf 'iscsi://127.0.0.1:%s/%s/%s' "$PORT" "$(iqn_url "$1")" "$2"; }
{
  config_prologue "$PORT" "$TGT"
  cat <<EOF
allowed_initiators = ["$ME", "$OTHER"]

  [[target.lun]]
  number = 0
  path = "$TMP/lun0.img"

  [[target.lun]]
  number = 1
  path = "$TMP/lun1.img"
  size = "32M"

  [[target.lun]]
  number = 2
  path = "$TMP/lun2.img"
  size = "32M"
  allowed_initiators = ["$OTHER"]

  [[target.lun]]
  number = 3
  path = "$TMP/lun3.img"
  size = "32M"
  block_size = 4096

[[target]]
name = "$TGT2"
allowed_initiators = ["$ME"]

  [[target.lun]]
  number = 0
  path = "$TMP/t2lun0.img"
  size = "32M"

[[target]]
name = "$TGT3"
allowed_initiators = ["$OTHER"]

  [[target.lun]]
  number = 0
  path = "$TMP/t3lun0.img"
  size = "32M"
EOF
} >"$TMP/ringtgt.toml"

# LUN 0 holds 32 MiB of random bytes before the daemon opens it.
head -c $((32 << 20)) /dev/urandom >"$TMP/lun0.img"

# designator INITIATOR TARGET LUN: the LU's NAA designator.
designator() {
  run_ok "$TMP/desig.out" "$XCOPY_TOOL" -i "$1" "$(url "$2" "$3")" designator
  sed -n 's/^DESIGNATOR //p' "$TMP/desig.out"
}
# xcopy INITIATOR TARGET LUN SRC DST SRC_LBA DST_LBA BLOCKS: EXTENDED COPY sent
# to that LU; its output (XCOPY ..., COPY_STATUS ...) in $TMP/xcopy.out.
xcopy() {
  run_ok "$TMP/xcopy.out" "$XCOPY_TOOL" -i "$1" "$(url "$2" "$3")" copy "${@:4}"
  log "$(tr '\n' ' ' <"$TMP/xcopy.out")"
}
result() { sed -n 's/^XCOPY //p' "$TMP/xcopy.out"; }
copy_status() { sed -n 's/^COPY_STATUS //p' "$TMP/xcopy.out"; }
# same FILE1 OFFSET1 FILE2 OFFSET2 BYTES: the byte ranges are equal.
same() {
  cmp -s -i "$2:$4" -n "$5" "$1" "$3" || fail "$3 at $4 differs from $1 at $2 ($5 bytes)"
}
# zeroes FILE: every byte of FILE is zero.
zeroes() { cmp -s -n "$(stat -c %s "$1")" /dev/zero "$1" || fail "$1 was written"; }

start_daemon "$TMP/ringtgt.toml" "$PORT"

D0=$(designator "$ME" "$TGT" 0)
D1=$(designator "$ME" "$TGT" 1)
D3=$(designator "$ME" "$TGT" 3)
DT2=$(designator "$ME" "$TGT2" 0)
D2=$(designator "$OTHER" "$TGT" 2)    # masked: only OTHER sees it
DT3=$(designator "$OTHER" "$TGT3" 0)  # only OTHER may log in there
log "designators: LUN0 $D0 LUN1 $D1 LUN2 $D2 LUN3 $D3, $TGT2 $DT2, $TGT3 $DT3"
for d in "$D0" "$D1" "$D2" "$D3" "$DT2" "$DT3"; do
  [[ $d =~ ^0x6[0-9a-f]{15}$ ]] || fail "not an NAA 6 designator: '$d'"
done
[[ $D0 != "$D1" ]] || fail "LUN 0 and LUN 1 report the same designator"

log "LUN 0 -> LUN 1, sent to LUN 0: 24 MiB in two segments"
xcopy "$ME" "$TGT" 0 "$D0" "$D1" 0 2048 49152
expect_eq "$(result)" GOOD "copy from LUN 0 to LUN 1"
expect_eq "$(copy_status)" "0x00 SEGMENTS 2 BYTES 25165824" "RECEIVE COPY RESULTS"
same "$TMP/lun0.img" 0 "$TMP/lun1.img" $((2048 * 512)) $((24 << 20))
same /dev/zero 0 "$TMP/lun1.img" 0 $((2048 * 512))  # nothing before it

log "LUN 0 -> LUN 1 sent to LUN 1 (the destination is the copy manager), and LUN 1 -> LUN 0"
xcopy "$ME" "$TGT" 1 "$D0" "$D1" 60000 60000 1000
expect_eq "$(result)" GOOD "copy sent to the destination LU"
same "$TMP/lun0.img" $((60000 * 512)) "$TMP/lun1.img" $((60000 * 512)) $((1000 * 512))
xcopy "$ME" "$TGT" 0 "$D1" "$D0" 2048 65000 16
expect_eq "$(result)" GOOD "copy from LUN 1 to LUN 0"
same "$TMP/lun0.img" 0 "$TMP/lun0.img" $((65000 * 512)) $((16 * 512))

log "LUN 0 (512-byte blocks) -> LUN 3 (4096-byte blocks)"
xcopy "$ME" "$TGT" 0 "$D0" "$D3/4096" 4096 10 2048
expect_eq "$(result)" GOOD "copy into 4096-byte blocks"
same "$TMP/lun0.img" $((4096 * 512)) "$TMP/lun3.img" $((10 * 4096)) $((2048 * 512))
xcopy "$ME" "$TGT" 0 "$D0" "$D3/4096" 0 1000 3
expect_eq "$(result)" "CHECK_CONDITION 0x0a/0x26/0x0a" "3 blocks of 512 into blocks of 4096"

log "a LUN of another target the initiator may log in to"
xcopy "$ME" "$TGT" 0 "$D0" "$DT2" 100 200 4096
expect_eq "$(result)" GOOD "copy into $TGT2"
same "$TMP/lun0.img" $((100 * 512)) "$TMP/t2lun0.img" $((200 * 512)) $((4096 * 512))

log "a LUN masked away from the initiator, a target that refuses it: not reachable"
xcopy "$ME" "$TGT" 0 "$D0" "$D2" 0 0 64
expect_eq "$(result)" "CHECK_CONDITION 0x0a/0x0d/0x02" "copy into a masked LUN"
expect_eq "$(copy_status)" "0x01 SEGMENTS 0 BYTES 0" "status of the refused copy"
xcopy "$ME" "$TGT" 0 "$D2" "$D1" 0 0 64
expect_eq "$(result)" "CHECK_CONDITION 0x0a/0x0d/0x02" "copy out of a masked LUN"
xcopy "$ME" "$TGT" 0 "$D0" "$DT3" 0 0 64
expect_eq "$(result)" "CHECK_CONDITION 0x0a/0x0d/0x02" "copy into $TGT3"
zeroes "$TMP/lun2.img"
zeroes "$TMP/t3lun0.img"
# The initiator the LUN is masked to may.
xcopy "$OTHER" "$TGT" 0 "$D0" "$D2" 0 0 64
expect_eq "$(result)" GOOD "copy into LUN 2 by the initiator that sees it"
same "$TMP/lun0.img" 0 "$TMP/lun2.img" 0 $((64 * 512))

log "a LUN removed live is not reachable any more"
run_ok "$TMP/ctl.out" "$RINGTGTCTL" --socket "$TMP/admin.sock" lun remove --target "$TGT2" \
  --lun 0 --force
xcopy "$ME" "$TGT" 0 "$D0" "$DT2" 0 0 64
expect_eq "$(result)" "CHECK_CONDITION 0x0a/0x0d/0x02" "copy into a removed LUN"

stop_daemon_ok
