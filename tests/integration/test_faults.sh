#!/usr/bin/env bash
# Disk faults seen by real initiators (issue 12): a daemon with [testing]
# fault_injection = true, faults armed through `ringtgtctl fault`, and
# libiscsi (tests/tools/fault_tool.c, which prints status and sense with its
# INFORMATION field) and qemu-io as the initiators:
# - EIO on an LBA range: MEDIUM ERROR naming the first bad LBA, also for a
#   command that starts before the range; the rest of the LUN keeps working;
# - ENOSPC: DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT (07h/27h/07h);
# - short reads and writes: continued by the target, the data is right;
# - slow completions (2 s): the initiator times out and sends ABORT TASK; the
#   target answers it once the READ is out of the backend and never answers the
#   READ itself; other sessions do I/O meanwhile on the same reactor, and the
#   aborting session and new logins keep working;
# - a failed fdatasync: the write it covered fails, and every later durable
#   write and SYNCHRONIZE CACHE fails too (writethrough and writeback), until
#   the LUN is opened again (a restart);
# and /metrics counts each injected fault and each resulting error.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${FAULT_TOOL:?FAULT_TOOL must name the fault_tool binary (tests/tools/fault_tool.c)}"
: "${RINGTGTCTL:?RINGTGTCTL must name the ringtgtctl binary}"
command -v jq >/dev/null || fail "jq is missing (scripts/deps.sh installs it)"
command -v qemu-io >/dev/null || fail "qemu-io is missing (apt install qemu-utils qemu-block-extra)"
command -v curl >/dev/null || fail "curl is missing (scripts/deps.sh installs it)"

TGT=iqn.2025-01.com.example:faults
PORT=$(pick_port)
MPORT=$(pick_port)
IMG0=$TMP/lun0.img  # writethrough
IMG1=$TMP/lun1.img  # writeback
CFG=$TMP/faults.toml
CHECK="python3 $RINGTGT_SRC/tests/integration/metrics_check.py"
URL0="iscsi://127.0.0.1:$PORT/$TGT/0"
URL1="iscsi://127.0.0.1:$PORT/$TGT/1"

# One worker: every session shares one reactor, so a slow completion that
# blocked it would stall the others too.
{
  config_prologue "$PORT" "$TGT" | sed 's/^workers = 2/workers = 1/'
  cat <<EOF

  [[target.lun]]
  number = 0
  path = "$IMG0"
  size = "64M"
  block_size = 512

  [[target.lun]]
  number = 1
  path = "$IMG1"
  size = "16M"
  block_size = 512
  write_ack = "writeback"

[iscsi]
nop_interval = 0

[metrics]
listen = "127.0.0.1:$MPORT"

[testing]
fault_injection = true
EOF
} >"$CFG"

ctl() { "$RINGTGTCTL" --socket "$TMP/admin.sock" "$@"; }

scrape() { curl -fsS --max-time 5 "http://127.0.0.1:$MPORT/metrics" -o "$1" || fail "GET /metrics failed"; }
metric() { $CHECK "$1" value "$2" || fail "no sample $2 in /metrics"; }
# jq, not python3: these run inside the 2 s window of a delayed command.
lun_stat() { ctl --json lun stats --target "$TGT" | jq -r ".[] | select(.lun == $1) | .$2"; }

start_daemon "$CFG" "$PORT"
expect_grep 'fault_injection = true: THIS DAEMON IS FOR TESTS' "$DAEMON_LOG" "the loud warning"

ctl --json fault list >"$TMP/list0.json"
expect_eq "$(jq length "$TMP/list0.json")" 2 "fault list: both LUNs inject faults"

qemu_ok "$TMP/fill.out" "$URL0" "write -P 0x5a 0 4M"

# --- EIO on LBAs 1000..1007 -----------------------------------------------------
log "EIO on a range"
ctl --json fault inject --target "$TGT" --lun 0 --fault eio --lba 1000 --blocks 8 >"$TMP/eio.json"
tool "$TMP/eio.out" "$URL0" read:1000:8 read:996:8 read:1004:1 write:1004:2 read:0:8 \
  read:1008:8 write:1008:8 write:990:10
expect_line "$TMP/eio.out" "read 1000 8: CHECK CONDITION key 0x03 asc 0x11 ascq 0x00 info 1000"
# Starts before the bad range: the good blocks are read, the first bad one is named.
expect_line "$TMP/eio.out" "read 996 8: CHECK CONDITION key 0x03 asc 0x11 ascq 0x00 info 1000"
expect_line "$TMP/eio.out" "read 1004 1: CHECK CONDITION key 0x03 asc 0x11 ascq 0x00 info 1004"
expect_line "$TMP/eio.out" "write 1004 2: CHECK CONDITION key 0x03 asc 0x0c ascq 0x00 info 1004"
expect_line "$TMP/eio.out" "read 0 8: GOOD"
expect_line "$TMP/eio.out" "read 1008 8: GOOD"
expect_line "$TMP/eio.out" "write 1008 8: GOOD"
expect_line "$TMP/eio.out" "write 990 10: GOOD"
# qemu (libiscsi inside) sees EIO there and nowhere else.
qemu "$TMP/eio-qemu.out" "$URL0" "read -P 0x5a 4096 400k" "read 512000 4096" "read -P 0x5a 600k 1M"
expect_grep '^read failed: Input/output error' "$TMP/eio-qemu.out" "qemu-io read of the bad range"
expect_eq "$(grep -c '^read [0-9]' "$TMP/eio-qemu.out")" 2 "qemu-io reads around the bad range"
ctl --json fault list --target "$TGT" >"$TMP/eio-list.json"
expect_grep '"fault": "eio"' "$TMP/eio-list.json" "the armed EIO in fault list"
ctl fault clear --target "$TGT" --lun 0 >"$TMP/clear.out"
expect_grep '^1 fault\(s\) cleared' "$TMP/clear.out"
tool "$TMP/eio-after.out" "$URL0" read:1000:8
expect_line "$TMP/eio-after.out" "read 1000 8: GOOD"

# --- ENOSPC ----------------------------------------------------------------------
log "ENOSPC"
ctl fault inject --target "$TGT" --lun 0 --fault enospc >/dev/null
tool "$TMP/nospc.out" "$URL0" write:2000:8 read:2000:8
expect_line "$TMP/nospc.out" "write 2000 8: CHECK CONDITION key 0x07 asc 0x27 ascq 0x07 info 2000"
expect_line "$TMP/nospc.out" "read 2000 8: GOOD"
qemu "$TMP/nospc-qemu.out" "$URL0" "write -P 0x11 8M 64k"
expect_grep '^write failed: No space left on device' "$TMP/nospc-qemu.out" "qemu-io sees ENOSPC"
ctl fault clear --target "$TGT" --lun 0 >/dev/null
tool "$TMP/nospc-after.out" "$URL0" write:2000:8
expect_line "$TMP/nospc-after.out" "write 2000 8: GOOD"

# --- short transfers: continued, data intact --------------------------------------
log "short reads and writes"
ctl fault inject --target "$TGT" --lun 0 --fault short >/dev/null
qemu_ok "$TMP/short.out" "$URL0" "write -P 0xc3 1M 1M" "write -P 0x3c 3M 64k" \
  "read -P 0xc3 1M 1M" "read -P 0x3c 3M 64k" "read -P 0x5a 0 400k"
expect_eq "$(grep -c '^read [0-9]' "$TMP/short.out")" 3 "qemu-io verified reads with short transfers"
ctl --json fault list --target "$TGT" >"$TMP/short-list.json"
shorts=$(jq '.[0].injected.short' "$TMP/short-list.json")
((shorts >= 10)) || fail "expected at least 10 short transfers injected, got $shorts"
ctl fault clear --target "$TGT" --lun 0 >/dev/null
want=$(head -c 1048576 /dev/zero | tr '\0' '\303' | sha256sum | cut -d' ' -f1)
got=$(dd if="$IMG0" bs=65536 skip=1048576 count=1048576 iflag=skip_bytes,count_bytes status=none |
  sha256sum | cut -d' ' -f1)
expect_eq "$got" "$want" "backing file after short writes"

# --- slow completions: timeout, ABORT TASK, late completion dropped ---------------
log "slow completion aborted by the initiator"
ctl fault inject --target "$TGT" --lun 0 --fault delay --delay-ms 2000 --lba 5000 --blocks 8 \
  --io read --count 1 >/dev/null
mkfifo "$TMP/cue"
"$FAULT_TOOL" -i iqn.2025-01.com.example:aborter "$URL0" abort:5000:8:200 wait read:5000:8 \
  <"$TMP/cue" >"$TMP/abort.out" 2>&1 &
ABORTER=$!
bg_track "$ABORTER"
exec 7>"$TMP/cue"  # held open so the tool's read waits for the cue, not EOF
# wait_line FILE LINE_REGEX: until the background tool printed it (up to 10 s).
wait_line() {
  local i
  for ((i = 0; i < 100; i++)); do
    grep -Eq "$2" "$1" && return 0
    kill -0 "$ABORTER" 2>/dev/null || break
    sleep 0.1
  done
  grep -Eq "$2" "$1" || { cat "$1" >&2; fail "no line /$2/ in $1"; }
}
wait_line "$TMP/abort.out" '^abort 5000 8: no answer in 200 ms; ABORT TASK sent$'
# Another session, on the same (only) reactor, while the aborted READ is held
# (the target answers the ABORT TASK once the READ is out of the backend):
# had the delay blocked the reactor, these would wait for it.
tool "$TMP/during.out" "$URL0" read:2048:8 write:12288:8 read:12288:8
expect_eq "$(grep -c ': GOOD$' "$TMP/during.out")" 3 "I/O of another session during the delay"
expect_eq "$(lun_stat 0 in_flight)" 1 "the aborted READ still in the backend while others did I/O"
wait_line "$TMP/abort.out" '^abort 5000 8: ABORT TASK response'
# Answered (function complete) once the READ left the backend, 2 s after it
# started; and no status or data for the READ itself ever came.
line=$(grep '^abort 5000 8: ABORT TASK response' "$TMP/abort.out")
[[ $line =~ ^abort\ 5000\ 8:\ ABORT\ TASK\ response\ 0\ after\ ([0-9]+)\ ms\;\ the\ READ\ got\ no\ answer$ ]] ||
  fail "unexpected abort outcome: $line"
((BASH_REMATCH[1] >= 1000)) || fail "ABORT TASK answered before the READ left the backend: $line"
expect_grep 'task management 1 from iqn.2025-01.com.example:aborter .*response 0' "$DAEMON_LOG"
expect_eq "$(lun_stat 0 in_flight)" 0 "the slow READ completed in the backend"
echo go >&7
exec 7>&-
wait "$ABORTER" || fail "fault_tool (aborter) exited with status $?"
expect_line "$TMP/abort.out" "read 5000 8: GOOD"
tool "$TMP/newlogin.out" "$URL0" read:5000:8
expect_line "$TMP/newlogin.out" "read 5000 8: GOOD"
qemu_ok "$TMP/newlogin-qemu.out" "$URL0" "read -P 0xc3 1M 64k" "write -P 0x78 6M 4k" "read -P 0x78 6M 4k"
kill -0 "$DAEMON_PID" || fail "the daemon died"

# --- a failed fdatasync ---------------------------------------------------------
log "failed flush, writethrough LUN 0"
ctl fault inject --target "$TGT" --lun 0 --fault flush --count 1 >/dev/null
tool "$TMP/flush0.out" "$URL0" write:3000:8 write:3008:8 sync read:3000:8 read:0:8
# The write the failed sync covered, and every durable write and sync after it
# (the fault fired once), fail: nothing is reported durable again.
expect_line "$TMP/flush0.out" "write 3000 8: CHECK CONDITION key 0x03 asc 0x0c ascq 0x00 info 3000"
expect_line "$TMP/flush0.out" "write 3008 8: CHECK CONDITION key 0x03 asc 0x0c ascq 0x00 info 3008"
expect_line "$TMP/flush0.out" "sync: CHECK CONDITION key 0x03 asc 0x0c ascq 0x00 info -1"
expect_line "$TMP/flush0.out" "read 0 8: GOOD"
expect_grep 'fdatasync failed .*until it is opened again' "$DAEMON_LOG"
ctl --json fault list --target "$TGT" >"$TMP/flush-list.json"
expect_eq "$(jq '.[0].faults | length' "$TMP/flush-list.json")" 0 "the flush fault fired once and is spent"

log "failed flush, writeback LUN 1"
tool "$TMP/flush1a.out" "$URL1" write:10:8
expect_line "$TMP/flush1a.out" "write 10 8: GOOD"
ctl fault inject --target "$TGT" --lun 1 --fault flush --count 1 >/dev/null
tool "$TMP/flush1.out" "$URL1" sync sync read:10:8
expect_eq "$(grep -c '^sync: CHECK CONDITION key 0x03 asc 0x0c ascq 0x00' "$TMP/flush1.out")" 2 \
  "both SYNCHRONIZE CACHEs after the failed one fail"
expect_line "$TMP/flush1.out" "read 10 8: GOOD"

# --- the metrics counted each ------------------------------------------------------
scrape "$TMP/m.txt"
L0="target=\"$TGT\",lun=\"0\""
L1="target=\"$TGT\",lun=\"1\""
val() { metric "$TMP/m.txt" "$1" | cut -d. -f1; }
(($(val "ringtgt_lun_faults_injected_total{$L0,fault=\"eio\"}") >= 5)) || fail "eio faults not counted"
(($(val "ringtgt_lun_faults_injected_total{$L0,fault=\"enospc\"}") >= 2)) || fail "enospc not counted"
(($(val "ringtgt_lun_faults_injected_total{$L0,fault=\"short\"}") >= shorts)) || fail "short not counted"
expect_eq "$(val "ringtgt_lun_faults_injected_total{$L0,fault=\"delay\"}")" 1 "delays injected"
expect_eq "$(val "ringtgt_lun_faults_injected_total{$L0,fault=\"flush\"}")" 1 "LUN 0 flush faults"
expect_eq "$(val "ringtgt_lun_faults_injected_total{$L1,fault=\"flush\"}")" 1 "LUN 1 flush faults"
# Errors the initiators heard: 4 EIO commands + 3 after the failed sync on LUN 0, 2 on LUN 1
# (qemu-io's failed read may have been retried, so at least).
(($(val "ringtgt_lun_errors_total{$L0,reason=\"medium_error\"}") >= 8)) || fail "medium errors not counted"
(($(val "ringtgt_lun_errors_total{$L0,reason=\"data_protect\"}") >= 2)) || fail "ENOSPC not counted"
expect_eq "$(val "ringtgt_lun_errors_total{$L1,reason=\"medium_error\"}")" 2 "LUN 1 medium errors"

# --- opened again: durable writes work -----------------------------------------------
log "restart: the LUNs are opened again"
stop_daemon_ok
start_daemon "$CFG" "$PORT"
tool "$TMP/reopen.out" "$URL0" write:3000:8 sync read:3000:8
expect_line "$TMP/reopen.out" "write 3000 8: GOOD"
expect_line "$TMP/reopen.out" "sync: GOOD"
tool "$TMP/reopen1.out" "$URL1" sync
expect_line "$TMP/reopen1.out" "sync: GOOD"
stop_daemon_ok
