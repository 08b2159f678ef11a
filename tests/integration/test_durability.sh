#!/usr/bin/env bash
# SIGKILL durability: every write a writethrough LUN acknowledged must be on
# disk after the daemon is killed with SIGKILL, seen both through iSCSI after a
# restart and directly in the backing file. The verifier must also catch a
# corrupted block, or the test proves nothing.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${ACK_WRITER:?ACK_WRITER must name the ack_writer tool (tests/tools/ack_writer.c)}"
[[ -x $ACK_WRITER ]] || fail "ACK_WRITER=$ACK_WRITER is not executable"

PORT=$(pick_port)
TGT=iqn.2025-01.com.example:durable
IMG512=$TMP/durable512.img
IMG4K=$TMP/durable4k.img
{ config_prologue "$PORT" "$TGT"; cat <<EOF; } >"$TMP/ringtgt.toml"

  [[target.lun]]
  number = 0
  path = "$IMG512"
  size = "32M"
  block_size = 512
  write_ack = "writethrough"

  [[target.lun]]
  number = 1
  path = "$IMG4K"
  size = "32M"
  block_size = 4096
  write_ack = "writethrough"
EOF

# kill_during_writes LUN STRIDE ACKLOG: runs the writer on LUN, SIGKILLs the
# daemon after ~2 s of acknowledged writes, and checks the writer then fails.
kill_during_writes() {
  local lun=$1 stride=$2 acklog=$3
  start_daemon "$TMP/ringtgt.toml" "$PORT"
  "$ACK_WRITER" write -s "$stride" "iscsi://127.0.0.1:$PORT/$TGT/$lun" >"$acklog" 2>"$acklog.err" &
  local wpid=$! i
  bg_track "$wpid"
  for ((i = 0; i < 100; i++)); do
    [[ -s $acklog ]] && break
    kill -0 "$wpid" 2>/dev/null || break
    sleep 0.1
  done
  [[ -s $acklog ]] || {
    cat "$acklog.err" >&2
    fail "LUN $lun: the writer got no write acknowledged within 10 s"
  }
  sleep 2
  kill -0 "$wpid" 2>/dev/null || {
    cat "$acklog.err" >&2
    fail "LUN $lun: the writer stopped before the daemon was killed"
  }
  kill9_daemon
  local rc=0
  for ((i = 0; i < 150; i++)); do
    kill -0 "$wpid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$wpid" 2>/dev/null; then
    kill -KILL "$wpid"
    wait "$wpid" || true
    fail "LUN $lun: the writer did not notice the dead target within 15 s"
  fi
  wait "$wpid" || rc=$?
  ((rc != 0)) || fail "LUN $lun: the writer exited 0 although its target was killed"
  local n
  n=$(grep -c '^ACK ' "$acklog" || true)
  log "LUN $lun: $n writes acknowledged before SIGKILL; writer: $(tail -n 1 "$acklog.err")"
  ((n > 100)) || fail "LUN $lun: only $n acknowledged writes, expected more than 100"
}

verify_lun() {
  local lun=$1 img=$2 bs=$3 acklog=$4
  start_daemon "$TMP/ringtgt.toml" "$PORT"
  run_ok "$TMP/verify$lun.txt" "$ACK_WRITER" verify "iscsi://127.0.0.1:$PORT/$TGT/$lun" "$acklog"
  expect_grep '^VERIFIED [0-9]+ blocks' "$TMP/verify$lun.txt" "LUN $lun: every acked block readable through iSCSI"
  log "LUN $lun via iSCSI: $(cat "$TMP/verify$lun.txt")"
  stop_daemon_ok
  run_ok "$TMP/vfile$lun.txt" "$ACK_WRITER" verify-file "$img" "$bs" "$acklog"
  expect_grep '^VERIFIED [0-9]+ blocks' "$TMP/vfile$lun.txt" "LUN $lun: every acked block in the backing file"
  log "LUN $lun in $img: $(cat "$TMP/vfile$lun.txt")"
}

log "512-byte LUN: SIGKILL during acknowledged writes"
kill_during_writes 0 7 "$TMP/ack0.log"
verify_lun 0 "$IMG512" 512 "$TMP/ack0.log"

log "4096-byte LUN: SIGKILL during acknowledged writes"
kill_during_writes 1 3 "$TMP/ack1.log"
verify_lun 1 "$IMG4K" 4096 "$TMP/ack1.log"

log "the verifier must catch a corrupted acknowledged block"
victim=$(awk '/^ACK /{l=$2} END{print l}' "$TMP/ack0.log")
[[ -n $victim ]] || fail "no acknowledged LBA to corrupt"
dd if="$IMG512" of="$TMP/victim.bak" bs=512 skip="$victim" count=1 status=none
# Every bit of one byte flipped: writing a fixed byte left the block intact
# whenever the block already held that byte there (1 run in 256).
at=$((victim * 512 + 100))
byte=$(od -An -tu1 -j "$at" -N1 "$IMG512" | tr -d ' ')
# shellcheck disable=SC2059
printf "\\$(printf '%03o' $((byte ^ 0xff)))" | dd of="$IMG512" bs=1 seek="$at" conv=notrunc status=none
[[ $(od -An -tu1 -j "$at" -N1 "$IMG512" | tr -d ' ') == $((byte ^ 0xff)) ]] ||
  fail "the byte at $at was not changed"
run_fails "$TMP/vbad_file.txt" "$ACK_WRITER" verify-file "$IMG512" 512 "$TMP/ack0.log"
expect_grep "^BAD lba $victim " "$TMP/vbad_file.txt" "verify-file reports the corrupted LBA $victim"
start_daemon "$TMP/ringtgt.toml" "$PORT"
run_fails "$TMP/vbad_iscsi.txt" "$ACK_WRITER" verify "iscsi://127.0.0.1:$PORT/$TGT/0" "$TMP/ack0.log"
expect_grep "^BAD lba $victim " "$TMP/vbad_iscsi.txt" "verify via iSCSI reports the corrupted LBA $victim"
stop_daemon_ok
dd if="$TMP/victim.bak" of="$IMG512" bs=512 seek="$victim" count=1 conv=notrunc status=none
run_ok "$TMP/vrestored.txt" "$ACK_WRITER" verify-file "$IMG512" 512 "$TMP/ack0.log"
expect_grep '^VERIFIED ' "$TMP/vrestored.txt" "verify-file after restoring LBA $victim"
log "corruption at LBA $victim detected through both paths; restored block verifies"
