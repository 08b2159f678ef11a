#!/usr/bin/env bash
# Data integrity through QEMU's iSCSI driver (libiscsi): patterned writes of
# many sizes and offsets read back with -P, on 512- and 4096-byte LUNs, then a
# 32 MiB random image copied in and out with qemu-img convert and compared by
# sha256 both through iSCSI and in the daemon's backing file. Three runs:
# default negotiation, tiny bursts with InitialR2T=Yes and no immediate data
# (many R2Ts and small PDUs), and CRC32C header digests.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

command -v qemu-io >/dev/null || fail "qemu-io is missing (apt install qemu-utils qemu-block-extra)"
command -v qemu-img >/dev/null || fail "qemu-img is missing"

TGT=iqn.2025-01.com.example:qemu
MiB=1048576
SRC=$TMP/random32.img
head -c $((32 * MiB)) /dev/urandom >"$SRC"
SRC_SHA=$(sha_of "$SRC")

# Disjoint regions of the 64 MiB 512-byte LUN: "offset length pattern".
# shellcheck disable=SC2034 # used through namerefs in pattern_io
REGIONS512=(
  "0 512 0x11"
  "4096 4096 0x22"
  "196608 65536 0x33"
  "$MiB $MiB 0x44"
  "$((8 * MiB + 4096 * 7)) $((MiB + 4096)) 0x55"
  "$((12 * MiB + 512)) $((3 * MiB + 1536)) 0x66"
  "$((20 * MiB)) $((3 * MiB)) 0x88"
  "$((30 * MiB - 1536)) 1024 0x99"
  "$((64 * MiB - 512)) 512 0x77"
)
# ... and zeroes that must stay zero between them.
# shellcheck disable=SC2034
HOLES512=("512 3584" "8192 188416" "$((2 * MiB)) $((6 * MiB))" "$((23 * MiB)) $((MiB))")
# The 16 MiB 4096-byte LUN: block-aligned regions.
REGIONS4K=(
  "0 4096 0xa1"
  "40960 65536 0xa2"
  "$((MiB + 4096 * 3)) $((3 * MiB + 4096)) 0xa3"
  "$((16 * MiB - 4096)) 4096 0xa4"
)
# shellcheck disable=SC2034
HOLES4K=("4096 36864" "$((5 * MiB)) $((2 * MiB))")

# qemu_io OUT IMAGE_SPEC COMMANDS...: one qemu-io run (one login), each
# command a -c; IMAGE_SPEC is "url URL" or "opts KEY=VALUE,...".
qemu_io() {
  local out=$1 kind=$2 spec=$3
  shift 3
  local args=() c
  for c in "$@"; do args+=(-c "$c"); done
  if [[ $kind == url ]]; then
    run_ok "$out" qemu-io -f raw "${args[@]}" "$spec"
  else
    run_ok "$out" qemu-io "${args[@]}" --image-opts "$spec"
  fi
  if grep -Eq 'Pattern verification failed|error|failed' "$out"; then
    cat "$out" >&2
    fail "qemu-io reported an error on $spec"
  fi
}

# pattern_io OUT KIND SPEC REGIONS_ARRAY HOLES_ARRAY: writes every region with
# its pattern, then (in a second login) reads all back and checks the holes.
pattern_io() {
  local out=$1 kind=$2 spec=$3
  local -n regions=$4 holes=$5
  local w=() r=() x off len pat
  for x in "${regions[@]}"; do
    read -r off len pat <<<"$x"
    w+=("write -P $pat $off $len")
    r+=("read -P $pat $off $len")
  done
  for x in "${holes[@]}"; do
    read -r off len <<<"$x"
    r+=("read -P 0 $off $len")
  done
  qemu_io "$out.w" "$kind" "$spec" "${w[@]}"
  expect_eq "$(grep -c '^wrote ' "$out.w")" "${#regions[@]}" "qemu-io writes completed on $spec"
  qemu_io "$out.r" "$kind" "$spec" "${r[@]}"
  expect_eq "$(grep -c '^read ' "$out.r")" "$((${#regions[@]} + ${#holes[@]}))" \
    "qemu-io verified reads on $spec"
}

# file_has_pattern FILE OFF LEN BYTE: the backing file holds BYTE repeated.
file_has_pattern() {
  local f=$1 off=$2 len=$3 byte=$4
  local want got
  want=$(head -c "$len" /dev/zero | tr '\0' "\\$(printf '%03o' "$byte")" | sha256sum | cut -d' ' -f1)
  got=$(dd if="$f" bs=65536 skip="$off" count="$len" iflag=skip_bytes,count_bytes status=none |
    sha256sum | cut -d' ' -f1)
  [[ $want == "$got" ]] || fail "backing file $f at offset $off length $len: expected every byte $byte"
}

# run_suite NAME ISCSI_TOML DIGEST: one daemon with its own LUNs and config.
run_suite() {
  local name=$1 iscsi_toml=$2 digest=$3
  local port img512=$TMP/$name-512.img img4k=$TMP/$name-4k.img cfg=$TMP/$name.toml
  port=$(pick_port)
  cat >"$cfg" <<EOF
workers = 2
log_level = "info"
state_dir = "$TMP/state-$name"

[[portal]]
listen = "127.0.0.1:$port"

$iscsi_toml

[[target]]
name = "$TGT"

  [[target.lun]]
  number = 0
  path = "$img512"
  size = "64M"
  block_size = 512

  [[target.lun]]
  number = 1
  path = "$img4k"
  size = "16M"
  block_size = 4096
EOF
  start_daemon "$cfg" "$port"
  local kind spec0 spec1
  if ((digest)); then
    # QEMU's default offers HeaderDigest=None,CRC32C, which a target answers
    # with None; header-digest=crc32c makes it CRC32C only. libiscsi never
    # offers DataDigest=CRC32C, so data digests cannot be exercised here.
    kind=opts
    spec0="driver=iscsi,transport=tcp,portal=127.0.0.1:$port,target=$TGT,lun=0,header-digest=crc32c"
    spec1="driver=iscsi,transport=tcp,portal=127.0.0.1:$port,target=$TGT,lun=1,header-digest=crc32c"
  else
    kind=url
    spec0="iscsi://127.0.0.1:$port/$TGT/0"
    spec1="iscsi://127.0.0.1:$port/$TGT/1"
  fi

  if [[ $name == smallbursts ]]; then
    # The target must answer with the configured limits (libiscsi logs them).
    LIBISCSI_DEBUG=10 iscsi-inq "iscsi://127.0.0.1:$port/$TGT/0" >"$TMP/$name-keys.txt" 2>&1 ||
      fail "[$name] iscsi-inq failed"
    local kv
    for kv in InitialR2T=Yes ImmediateData=No MaxBurstLength=16384 FirstBurstLength=8192 \
      MaxRecvDataSegmentLength=8192; do
      expect_grep "TargetLoginReply: $kv " "$TMP/$name-keys.txt" "[$name] negotiated $kv"
    done
  fi

  log "[$name] patterns on the 512-byte LUN"
  pattern_io "$TMP/$name-p512" "$kind" "$spec0" REGIONS512 HOLES512
  log "[$name] patterns on the 4096-byte LUN"
  pattern_io "$TMP/$name-p4k" "$kind" "$spec1" REGIONS4K HOLES4K
  log "[$name] overwrite inside a written region"
  qemu_io "$TMP/$name-ovw" "$kind" "$spec0" \
    "write -P 0xee $((MiB + 512)) 1024" \
    "read -P 0x44 $MiB 512" "read -P 0xee $((MiB + 512)) 1024" "read -P 0x44 $((MiB + 1536)) $((MiB - 1536))"

  log "[$name] qemu-img convert 32 MiB random data in and out"
  if ((digest)); then
    run_ok "$TMP/$name-conv-in.txt" qemu-img convert -n -f raw "$SRC" --target-image-opts "$spec0"
    run_ok "$TMP/$name-conv-out.txt" qemu-img convert --image-opts "$spec0" -O raw "$TMP/$name-out.img"
  else
    run_ok "$TMP/$name-conv-in.txt" qemu-img convert -n -f raw -O raw "$SRC" "$spec0"
    run_ok "$TMP/$name-conv-out.txt" qemu-img convert -f raw -O raw "$spec0" "$TMP/$name-out.img"
  fi
  expect_eq "$(stat -c %s "$TMP/$name-out.img")" "$((64 * MiB))" "[$name] size of the image read back"
  expect_eq "$(sha_of "$TMP/$name-out.img" $((32 * MiB)))" "$SRC_SHA" \
    "[$name] sha256 of the first 32 MiB read back through iSCSI"
  # Beyond the copy, the earlier patterns must be intact.
  qemu_io "$TMP/$name-after" "$kind" "$spec0" "read -P 0x77 $((64 * MiB - 512)) 512" \
    "read -P 0 $((32 * MiB)) $MiB"

  if ((digest)); then
    expect_grep "initiator iqn.2008-11.org.linux-kvm target $TGT .*\\(header digest\\)" "$DAEMON_LOG" \
      "[$name] sessions logged in with CRC32C digests"
    expect_no_grep "target $TGT .*\\(no digests\\)" "$DAEMON_LOG" "[$name] every session used digests"
  fi
  stop_daemon_ok
  expect_grep 'stopped' "$DAEMON_LOG" "[$name] shutdown line"

  log "[$name] backing files hold what was written"
  expect_eq "$(sha_of "$img512" $((32 * MiB)))" "$SRC_SHA" "[$name] sha256 of the first 32 MiB of $img512"
  expect_eq "$(stat -c %s "$img512")" "$((64 * MiB))" "[$name] size of $img512"
  file_has_pattern "$img512" $((64 * MiB - 512)) 512 0x77
  local x off len pat
  for x in "${REGIONS4K[@]}"; do
    read -r off len pat <<<"$x"
    file_has_pattern "$img4k" "$off" "$len" "$pat"
  done
}

run_suite default "" 0
run_suite smallbursts "[iscsi]
initial_r2t = true
immediate_data = false
first_burst_length = 8192
max_burst_length = 16384
max_recv_data_segment_length = 8192" 0
run_suite digest "[iscsi]
header_digest = true
data_digest = true" 1
