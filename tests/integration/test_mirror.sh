#!/usr/bin/env bash
# Mirrored LUNs with local copies (issue 11, first slice; docs/replication.md),
# seen by real initiators (ringtgt-bench --verify, qemu-io, and libiscsi's
# fault_tool for status and sense), with faults injected per copy:
# - after a verified load every copy's file equals the primary's, byte for byte;
# - a read error on the primary is served from a copy and repaired: the
#   primary's file holds the good data again, and the counter says so;
# - a copy whose writes fail leaves the in-sync set (log line and metric), and
#   writes go on at ack_quorum; what the initiator wrote reads back;
# - below ack_quorum, on_quorum_loss = "fail" answers writes ABORTED COMMAND
#   (0Bh/3Eh/01h) and "read_only" DATA PROTECT (07h/27h/00h); reads go on;
#   "wait" holds a write until a resync brings the quorum back (then it is
#   GOOD and on every copy), or for quorum_wait seconds, then ABORTED COMMAND;
# - copies sharing a failure domain are warned about at start;
# - systemd's STATUS= line names a LUN whose copies are out of sync.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${FAULT_TOOL:?FAULT_TOOL must name the fault_tool binary (tests/tools/fault_tool.c)}"
: "${RINGTGTCTL:?RINGTGTCTL must name the ringtgtctl binary}"
: "${RINGTGT_BENCH:=$(dirname "$RINGTGT_BIN")/bench/ringtgt-bench}"
[[ -x $RINGTGT_BENCH ]] || fail "RINGTGT_BENCH=$RINGTGT_BENCH is not executable"
command -v qemu-io >/dev/null || fail "qemu-io is missing (apt install qemu-utils qemu-block-extra)"
command -v curl >/dev/null || fail "curl is missing (scripts/deps.sh installs it)"

TGT=iqn.2025-01.com.example:mirror
PORT=$(pick_port)
MPORT=$(pick_port)
CFG=$TMP/mirror.toml
CHECK="python3 $RINGTGT_SRC/tests/integration/metrics_check.py"
URL0="iscsi://127.0.0.1:$PORT/$TGT/0"
URL1="iscsi://127.0.0.1:$PORT/$TGT/1"
P0=$TMP/lun0.img  # LUN 0: primary + disk2 + disk3, ack_quorum 2, fail
C0B=$TMP/lun0-disk2.img
C0C=$TMP/lun0-disk3.img
P1=$TMP/lun1.img  # LUN 1: primary + b, ack_quorum 2, read_only
C1B=$TMP/lun1-b.img
URL2="iscsi://127.0.0.1:$PORT/$TGT/2"
P2=$TMP/lun2.img  # LUN 2: primary + w, ack_quorum 2, wait 3 s
C2W=$TMP/lun2-w.img

{
  config_prologue "$PORT" "$TGT"
  cat <<EOF

  [[target.lun]]
  number = 0
  path = "$P0"
  size = "32M"
  block_size = 512
  ack_quorum = 2
  on_quorum_loss = "fail"
  failure_domain = "disk:a"
    [[target.lun.copy]]
    name = "disk2"
    path = "$C0B"
    failure_domain = "disk:a"
    [[target.lun.copy]]
    name = "disk3"
    path = "$C0C"
    failure_domain = "disk:b"

  [[target.lun]]
  number = 1
  path = "$P1"
  size = "8M"
  block_size = 512
  on_quorum_loss = "read_only"
    [[target.lun.copy]]
    name = "b"
    path = "$C1B"

  [[target.lun]]
  number = 2
  path = "$P2"
  size = "8M"
  block_size = 512
  on_quorum_loss = "wait"
  quorum_wait = 3
    [[target.lun.copy]]
    name = "w"
    path = "$C2W"

[iscsi]
nop_interval = 0

[metrics]
listen = "127.0.0.1:$MPORT"

[testing]
fault_injection = true
EOF
} >"$CFG"

ctl() { "$RINGTGTCTL" --socket "$TMP/admin.sock" "$@"; }
scrape() { curl -fsS --max-time 5 "http://127.0.0.1:$MPORT/metrics" -o "$TMP/m.txt" || fail "GET /metrics failed"; }
# metric NAME{LABELS}: its value in the last scrape.
metric() { $CHECK "$TMP/m.txt" value "$1" || fail "no sample $1 in /metrics"; }
L0="target=\"$TGT\",lun=\"0\""
L1="target=\"$TGT\",lun=\"1\""
L2="target=\"$TGT\",lun=\"2\""
# --check-config validates the mirror keys with file:line:col.
"$RINGTGT_BIN" --check-config --config "$CFG" >"$TMP/check.out" 2>&1 ||
  { cat "$TMP/check.out" >&2; fail "--check-config refused the mirror config"; }
sed 's/^  ack_quorum = 2$/  ack_quorum = 4/' "$CFG" >"$TMP/bad.toml"
line=$(grep -n '^  ack_quorum = 4$' "$TMP/bad.toml" | cut -d: -f1)
[[ -n $line ]] || fail "the bad config has no ack_quorum line"
rc=0
"$RINGTGT_BIN" --check-config --config "$TMP/bad.toml" >"$TMP/bad.out" 2>&1 || rc=$?
expect_eq "$rc" 1 "--check-config exit status for ack_quorum = 4"
expect_grep "$TMP/bad.toml:$line:16: ack_quorum must be 1..3 \(the primary and its 2 copies\), not 4" \
  "$TMP/bad.out" "the bad ack_quorum's error"

# systemd's view: STATUS= lines through a NOTIFY_SOCKET listener.
NLOG=$TMP/notify.log
python3 "$RINGTGT_SRC/tests/integration/notify_listener.py" "$TMP/notify.sock" "$NLOG" 600 &
bg_track $!
for ((i = 0; i < 50; i++)); do [[ -e $NLOG.ready ]] && break; sleep 0.1; done
[[ -e $NLOG.ready ]] || fail "notify listener did not start"
# wait_status REGEX WHAT: a STATUS= line matching it (one comes every 5 s).
wait_status() { wait_grep "$1" "$NLOG" "$2" 15; }

NOTIFY_SOCKET=$TMP/notify.sock start_daemon "$CFG" "$PORT"
wait_status 'READY=1' "READY=1"
expect_no_grep 'DEGRADED' "$NLOG" "STATUS while every copy is in sync"
# The daemon says what each LUN survives; LUN 0's primary and disk2 share disk:a.
expect_grep "LUN 0: copies primary, disk2 share failure domain disk:a; survives the loss of 1 copy, but not of disk:a" \
  "$DAEMON_LOG" "the shared failure domain warning"
expect_grep "LUN 1: survives nothing without refusing writes" "$DAEMON_LOG" "LUN 1's redundancy"
scrape
expect_eq "$(metric "ringtgt_lun_copies_in_sync{$L0}")" 3 "LUN 0 copies in sync at start"
expect_eq "$(metric "ringtgt_lun_ack_quorum{$L0}")" 2 "LUN 0 ack_quorum"
# ... and so do /metrics and ringtgtctl copy list.
expect_eq "$(metric "ringtgt_lun_copy_losses_survivable{$L0}")" 1 "LUN 0 survives 1 copy's loss"
expect_eq "$(metric "ringtgt_lun_failure_domain_shared{$L0}")" 1 "LUN 0's shared domain"
expect_eq "$(metric "ringtgt_lun_copy_losses_survivable{$L1}")" 0 "LUN 1 survives no copy's loss"
expect_eq "$(metric "ringtgt_lun_failure_domain_shared{$L1}")" 0 "LUN 1 shares no domain"
ctl copy list >"$TMP/copies.txt"
expect_grep "^warning: target $TGT LUN 0: copies primary, disk2 share failure domain disk:a; survives the loss of 1 copy, but not of disk:a" \
  "$TMP/copies.txt" "copy list's shared domain warning"
expect_grep "^target $TGT LUN 1: survives nothing without refusing writes" "$TMP/copies.txt" \
  "copy list's line for LUN 1"
ctl --json copy list >"$TMP/copies.json"
python3 - "$TMP/copies.json" <<'PY' || fail "copy.list's redundancy fields"
import json, sys
rows = json.load(open(sys.argv[1]))
lun0 = [r for r in rows if r["lun"] == 0]
assert lun0 and all(r["redundancy_warning"] is True for r in lun0), lun0
assert all("but not of disk:a" in r["redundancy"] for r in lun0), lun0
assert all(r["redundancy_warning"] is False for r in rows if r["lun"] == 1), rows
PY

# --- every copy holds what the initiator wrote -----------------------------------------
log "verified load: every copy equals the primary"
verified_load "$URL0" 8M 3 --save-state "$TMP/gen.bin"
same_bytes "$P0" "$C0B" "after the verified load, copy disk2"
same_bytes "$P0" "$C0C" "after the verified load, copy disk3"
scrape
(($(metric "ringtgt_lun_copy_writes_total{$L0,copy=\"disk3\"}") > 0)) || fail "no writes counted on disk3"

# --- read repair ---------------------------------------------------------------------------
log "a read error on the primary is served from a copy and repaired"
# 16 MiB = LBA 32768. Good data on every copy, then the primary's blocks spoiled
# behind the daemon's back, and the next read of them fails there.
qemu_ok "$TMP/rr-write.out" "$URL0" "write -P 0x5a 16M 64k"
head -c 65536 /dev/zero | tr '\0' '\1' | dd of="$P0" bs=65536 seek=256 conv=notrunc status=none
cmp -s "$P0" "$C0B" && fail "the primary's blocks were not spoiled"
ctl fault inject --target "$TGT" --lun 0 --copy primary --fault eio --io read --lba 32768 \
  --blocks 128 --count 1 >/dev/null
qemu_ok "$TMP/rr-read.out" "$URL0" "read -P 0x5a 16M 64k"
expect_grep 'read repair: 65536 bytes at byte 16777216 failed on copy primary \(Input/output error\), read from copy disk2' \
  "$DAEMON_LOG" "the read repair log line"
scrape
expect_eq "$(metric "ringtgt_lun_read_repairs_total{$L0}")" 1 "read repairs"
same_bytes "$P0" "$C0B" "after the read repair, the primary"
expect_eq "$(metric "ringtgt_lun_copy_state{$L0,copy=\"primary\",state=\"in_sync\"}")" 1 \
  "the repaired primary stays in sync"

# --- a copy fails: out of sync, writes go on at quorum ---------------------------------------
log "copy disk3 fails its writes: it leaves the set, writes go on at ack_quorum 2"
ctl fault inject --target "$TGT" --lun 0 --copy disk3 --fault eio --io write >/dev/null
qemu_ok "$TMP/q-write.out" "$URL0" "write -P 0x61 20M 64k" "read -P 0x61 20M 64k"
expect_grep "copy disk3 of target $TGT LUN 0 out of sync: write failed: Input/output error" \
  "$DAEMON_LOG" "the out-of-sync log line"
scrape
expect_eq "$(metric "ringtgt_lun_copy_state{$L0,copy=\"disk3\",state=\"out_of_sync\"}")" 1 "disk3's state"
expect_eq "$(metric "ringtgt_lun_copy_state{$L0,copy=\"disk3\",state=\"in_sync\"}")" 0 "disk3's state"
expect_eq "$(metric "ringtgt_lun_copies_in_sync{$L0}")" 2 "copies in sync after disk3 failed"
expect_eq "$(metric "ringtgt_lun_quorum_losses_total{$L0}")" 0 "quorum losses while at quorum"
wait_status "STATUS=serving .*; DEGRADED: $TGT LUN 0: 1 of 3 copies out of sync \\(disk3\\)" \
  "systemd STATUS names the degraded LUN"
# Every block the first load acknowledged reads back, and new writes go on.
verified_load "$URL0" 8M 2 --load-state "$TMP/gen.bin"
qemu_ok "$TMP/q-read.out" "$URL0" "read -P 0x61 20M 64k" "read -P 0x5a 16M 64k"
same_bytes "$P0" "$C0B" "at quorum, copy disk2"
cmp -s "$P0" "$C0C" && fail "disk3 holds every write although its writes failed"
ctl --json fault list --target "$TGT" >"$TMP/list.json"
python3 - "$TMP/list.json" <<'PY' || fail "fault list does not show the copies of LUN 0"
import json, sys
rows = {(r["lun"], r.get("copy")): r for r in json.load(open(sys.argv[1]))}
assert set(rows) == {(0, "primary"), (0, "disk2"), (0, "disk3"), (1, "primary"), (1, "b"),
                     (2, "primary"), (2, "w")}, rows
assert rows[(0, "disk3")]["injected"]["eio"] > 0, rows
PY

# --- below quorum: fail ------------------------------------------------------------------------
log "disk2 fails too: below ack_quorum, on_quorum_loss = fail"
ctl fault inject --target "$TGT" --lun 0 --copy disk2 --fault eio --io write >/dev/null
tool "$TMP/fail.out" "$URL0" write:50000:8 write:50008:8 read:4096:8
expect_line "$TMP/fail.out" "write 50000 8: CHECK CONDITION key 0x0b asc 0x3e ascq 0x01 info 50000"
expect_line "$TMP/fail.out" "write 50008 8: CHECK CONDITION key 0x0b asc 0x3e ascq 0x01 info 50008"
expect_line "$TMP/fail.out" "read 4096 8: GOOD"
expect_grep "LUN 0 lost its write quorum \(1 of 3 copies in sync, ack_quorum 2\)" "$DAEMON_LOG"
qemu_ok "$TMP/fail-read.out" "$URL0" "read -P 0x61 20M 64k"
scrape
expect_eq "$(metric "ringtgt_lun_quorum_losses_total{$L0}")" 1 "LUN 0 quorum losses"
expect_eq "$(metric "ringtgt_lun_copies_in_sync{$L0}")" 1 "LUN 0 copies in sync below quorum"
(($(metric "ringtgt_lun_errors_total{$L0,reason=\"aborted_command\"}") >= 2)) ||
  fail "the refused writes are not counted as aborted_command"

# --- below quorum: read_only ---------------------------------------------------------------------
log "LUN 1 loses copy b: on_quorum_loss = read_only"
qemu_ok "$TMP/ro-fill.out" "$URL1" "write -P 0x77 0 128k"
same_bytes "$P1" "$C1B" "LUN 1 before the fault, copy b"
ctl fault inject --target "$TGT" --lun 1 --copy b --fault eio --io write >/dev/null
# (What a refused write's blocks hold afterwards is undefined, as after any
# failed write: the first one landed on the primary. So it is outside the
# 128 KiB read back below.)
tool "$TMP/ro.out" "$URL1" write:1000:8 write:1016:8 read:0:8
expect_line "$TMP/ro.out" "write 1000 8: CHECK CONDITION key 0x07 asc 0x27 ascq 0x00 info 1000"
expect_line "$TMP/ro.out" "write 1016 8: CHECK CONDITION key 0x07 asc 0x27 ascq 0x00 info 1016"
expect_line "$TMP/ro.out" "read 0 8: GOOD"
qemu_ok "$TMP/ro-read.out" "$URL1" "read -P 0x77 0 128k"
expect_grep "copy b of target $TGT LUN 1 out of sync: write failed: Input/output error" "$DAEMON_LOG"
scrape
expect_eq "$(metric "ringtgt_lun_quorum_losses_total{$L1}")" 1 "LUN 1 quorum losses"
(($(metric "ringtgt_lun_errors_total{$L1,reason=\"data_protect\"}") >= 2)) ||
  fail "the refused writes are not counted as data_protect"

# --- below quorum: wait ---------------------------------------------------------------------------
log "LUN 2 loses copy w: on_quorum_loss = wait holds a write until a resync brings w back"
ctl copy fail --target "$TGT" --lun 2 --copy w >/dev/null
expect_grep "LUN 2 lost its write quorum \(1 of 2 copies in sync, ack_quorum 2\): writes now get held until it is back, for at most 3000 ms each" \
  "$DAEMON_LOG" "LUN 2's quorum loss"
qemu "$TMP/wait-write.out" "$URL2" "write -P 0x42 64k 64k" &
qemu_pid=$!
bg_track $qemu_pid
# wait_waiting N: the LUN holds N writes (the metric is the event).
wait_waiting() {
  local i
  for ((i = 0; i < 100; i++)); do
    scrape
    [[ $(metric "ringtgt_lun_writes_waiting_for_quorum{$L2}") == "$1" ]] && return 0
    sleep 0.05
  done
  fail "LUN 2 does not hold $1 writes waiting for its quorum"
}
wait_waiting 1
ctl copy resync --target "$TGT" --lun 2 --copy w >/dev/null
wait "$qemu_pid" || true
if grep -Eq 'failed|error|Error' "$TMP/wait-write.out" || ! grep -q 'wrote 65536/65536' "$TMP/wait-write.out"; then
  cat "$TMP/wait-write.out" >&2
  fail "the write that waited for the quorum did not succeed once it was back"
fi
expect_grep "copy w of target $TGT LUN 2 is in sync again" "$DAEMON_LOG" "w rejoined"
expect_grep "LUN 2: the write quorum is back; 1 writes that waited for it go on" "$DAEMON_LOG"
same_bytes "$P2" "$C2W" "after the write that waited, copy w"
qemu_ok "$TMP/wait-read.out" "$URL2" "read -P 0x42 64k 64k"
scrape
expect_eq "$(metric "ringtgt_lun_writes_waiting_for_quorum{$L2}")" 0 "writes waiting once the quorum is back"

log "LUN 2 loses w again: after quorum_wait (3 s) the write gets ABORTED COMMAND"
ctl copy fail --target "$TGT" --lun 2 --copy w >/dev/null
started=$SECONDS
tool "$TMP/wait-expire.out" "$URL2" write:2048:8 read:0:8
((SECONDS - started >= 2)) || fail "the write was answered before quorum_wait was up"
expect_line "$TMP/wait-expire.out" "write 2048 8: CHECK CONDITION key 0x0b asc 0x3e ascq 0x01 info 2048"
expect_line "$TMP/wait-expire.out" "read 0 8: GOOD"
expect_grep "LUN 2: 1 writes waited for the write quorum until their time was up" "$DAEMON_LOG"

kill -0 "$DAEMON_PID" || fail "the daemon died"
stop_daemon_ok

# --- a copy smaller than the primary is refused at start, naming its table -------------------------
log "a copy smaller than the primary"
truncate -s 4M "$C1B"
rc=0
timeout 20 "$RINGTGT_BIN" --config "$CFG" >"$TMP/small.log" 2>&1 || rc=$?
((rc != 0)) || fail "the daemon started with a copy smaller than the primary"
expect_grep "$CFG:[0-9]+:[0-9]+: copy b of target $TGT LUN 1: $C1B is 4194304 bytes, smaller than the primary $P1 \(8388608 bytes\)" \
  "$TMP/small.log" "the small copy's error"
