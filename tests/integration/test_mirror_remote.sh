#!/usr/bin/env bash
# A mirrored LUN with a remote copy (issue 11; docs/replication.md, "Remote
# copies"): daemon A mirrors its LUN 0 (primary file, ack_quorum 1) to LUN 0
# of daemon B, which A logs in to as an initiator. Checked with real
# initiators (ringtgt-bench --verify), ringtgtctl, /metrics and cmp:
# - A starts while B is down: it serves, the copy shows connecting and goes
#   out of sync; B starts: A connects, resyncs the dirty regions on its own,
#   and the copy is in sync with A's primary byte for byte;
# - writes through A land on B; a unit attention from B (another initiator
#   reset its LUN) makes A's command go again, not the copy fail;
# - B takes at most 64 KiB a command (max_transfer): A's 1 MiB writes and
#   256 KiB resync regions reach it in pieces;
# - kill -9 B mid-write: A's writes go on at quorum, the copy goes out of
#   sync with dirty bytes; B restarts on the same file: A reconnects and
#   resyncs only the dirty regions (far fewer bytes than the LUN), the files
#   compare equal and every acknowledged block reads back from B alone;
# - B stops answering (SIGSTOP) mid-write: A goes on acknowledging at quorum
#   at once (the copy still in sync, writes behind on it), and within the
#   copy's command_timeout (3 s here; the default is 10) drops it; B answers
#   again: resync, equal files;
# - B stops answering while A is idle: A's NOP-Out ping goes unanswered and
#   the copy leaves the in-sync set within 5 s + command_timeout, no write
#   needed;
# - B's LUN made anew (its file deleted, B restarted): A's resync finds
#   a clean region that differs and syncs it in full, equal files; copy
#   replace syncs it in full too;
# - kill -9 of A mid-write: its restart resyncs the hot regions onto B (only
#   those), equal files;
# - a reload that replaces A's LU while qemu-io writes: the new LU's login to
#   B is a session of its own, the old LU's writes in flight are not cut
#   off, the copy stays in sync, equal files;
# - a remote LUN smaller than the primary, or of another block size, stops A
#   at start with the copy's file:line:col;
# - CHAP: A logs in to a B that wants it; with a wrong secret the copy stays
#   connecting.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${RINGTGTCTL:?RINGTGTCTL must name the ringtgtctl binary}"
: "${FAULT_TOOL:?FAULT_TOOL must name tests/tools/fault_tool}"
: "${RINGTGT_BENCH:=$(dirname "$RINGTGT_BIN")/bench/ringtgt-bench}"
[[ -x $RINGTGT_BENCH ]] || fail "RINGTGT_BENCH=$RINGTGT_BENCH is not executable"
command -v curl >/dev/null || fail "curl is missing (scripts/deps.sh installs it)"

TGT=iqn.2025-01.com.example:mirror-a
TGT_B=iqn.2025-01.com.example:replica-b
PORT=$(pick_port)
PORT_B=$(pick_port)
MPORT=$(pick_port)
CHECK="python3 $RINGTGT_SRC/tests/integration/metrics_check.py"
URL="iscsi://127.0.0.1:$PORT/$TGT/0"
URL_B="iscsi://127.0.0.1:$PORT_B/$TGT_B/0"
P=$TMP/primary.img
R=$TMP/replica.img
SIZE=$((64 << 20))
REGION=$((256 << 10))

{
  config_prologue "$PORT" "$TGT"
  cat <<EOF

  [[target.lun]]
  number = 0
  path = "$P"
  size = "64M"
  block_size = 512
  ack_quorum = 1
  resync_region_size = "256K"
    [[target.lun.copy]]
    name = "remote"
    url = "iscsi://127.0.0.1:$PORT_B/$TGT_B/0"
    failure_domain = "host:b"
    command_timeout = 3
    # More than the default 3 s for a loaded machine; B's restarts below are
    # found within 2 s.
    connect_wait = 5
    reconnect_max = 2

[metrics]
listen = "127.0.0.1:$MPORT"
EOF
} >"$TMP/a.toml"

{
  b_config_prologue
  cat <<EOF

  [[target.lun]]
  number = 0
  path = "$R"
  size = "64M"
  block_size = 512
  # Less than A's writes (1 MiB below) and resync regions (256 KiB): A
  # sends them in pieces.
  max_transfer = "64K"

  [[target.lun]]
  number = 1
  path = "$TMP/replica-4k.img"
  size = "64M"
  block_size = 4096
EOF
} >"$TMP/b.toml"

kill9_b() {
  kill -KILL "$B_PID"
  wait "$B_PID" 2>/dev/null || true
  B_PID=""
  log "daemon B killed with SIGKILL"
}

scrape() { curl -fsS --max-time 5 "http://127.0.0.1:$MPORT/metrics" -o "$TMP/m.txt" || fail "GET /metrics failed"; }
metric() { $CHECK "$TMP/m.txt" value "$1" || fail "no sample $1 in /metrics"; }
L="target=\"$TGT\",lun=\"0\""
# resynced_total: bytes every resync of the remote copy copied so far.
resynced_total() { copy_field remote resynced_bytes; }

# --- (c) A starts while B is down ---------------------------------------------------------
start_daemon "$TMP/a.toml" "$PORT"
expect_grep "copy remote of target $TGT LUN 0: cannot connect to $URL_B: .*\(200\.\.2000 ms apart\)" \
  "$DAEMON_LOG" "A's line about the unreachable copy, with its reconnect_max"
expect_grep "copy remote of target $TGT LUN 0: not connected within its connect_wait of 5000 ms" \
  "$DAEMON_LOG" "A's line about the copy's connect_wait"
wait_state remote connecting 30
scrape
expect_eq "$(metric "ringtgt_lun_copy_state{$L,copy=\"remote\",state=\"connecting\"}")" 1 \
  "the remote copy's state metric while B is down"
log "A serves at quorum 1 while the copy is down"
verified_load "$URL" 2M 2 --save-state "$TMP/gen.bin"
dirty=$(copy_field remote dirty_bytes)
((dirty > 0 && dirty <= 2 << 20)) || fail "dirty bytes $dirty after writes over 2 MiB with B down"
expect_eq "$(resynced_total)" 0 "bytes resynced before B ran"
log "B starts: A connects and resyncs $dirty dirty bytes on its own"
start_b
wait_state remote in_sync 30
expect_grep "target $TGT LUN 0: reconnected: resyncing copy remote" "$DAEMON_LOG"
expect_eq "$(resynced_total)" "$dirty" "bytes resynced after B started (the dirty regions)"
same_bytes "$P" "$R" "after B started and the resync"

# --- (a) writes through A land on B -----------------------------------------------------------
log "a verified load with the copy in sync"
verified_load "$URL" 2M 2 --load-state "$TMP/gen.bin" --save-state "$TMP/gen.bin"
same_bytes "$P" "$R" "after the load with both copies in sync"
expect_eq "$(copy_field remote state)" in_sync "the copy after the load"

# --- (a1) commands larger than B takes go in pieces -----------------------------------------
expect_grep "copy remote of target $TGT LUN 0: connected to .*at most 65536 bytes a command" \
  "$DAEMON_LOG" "A's line with the largest command B takes"
run_ok "$TMP/copy-list.out" "$RINGTGTCTL" --socket "$TMP/admin.sock" copy list
expect_line "$TMP/copy-list.out" \
  "copy remote of target $TGT LUN 0: $URL_B (at most 65536 bytes a command, unmaps as UNMAP)"
run_fails "$TMP/big-read.out" "$RINGTGT_BENCH" --url "$URL_B" --rw read --bs 128k --ios 1 --quiet
log "B itself refuses a 128 KiB READ; A writes 1 MiB at a time through to it"
verified_load "$URL" 2M 2 --bs 1M --load-state "$TMP/gen.bin" --save-state "$TMP/gen.bin"
expect_eq "$(copy_field remote state)" in_sync "the copy after the 1 MiB writes"
same_bytes "$P" "$R" "after 1 MiB writes, in 64 KiB pieces on B"

# --- (a2) a unit attention from B is not a failure of the copy -------------------------------
log "another initiator resets B's LUN: A's next command to it meets a unit attention"
run_ok "$TMP/lureset.out" "$FAULT_TOOL" -i iqn.2025-01.com.example:someone-else "$URL_B" lureset
expect_grep "^lureset: done" "$TMP/lureset.out" "the LOGICAL UNIT RESET of B's LUN"
verified_load "$URL" 2M 1 --load-state "$TMP/gen.bin" --save-state "$TMP/gen.bin"
wait_grep "copy remote of target $TGT LUN 0: unit attention from the copy \(29/03\): the command goes again" \
  "$DAEMON_LOG" "the unit attention A met"
expect_eq "$(copy_field remote state)" in_sync "the copy after B's unit attention"
same_bytes "$P" "$R" "after B's unit attention"

# --- (b) kill -9 B mid-write, restart it ----------------------------------------------------
before=$(resynced_total)
outs=$(grep -c "copy remote of target $TGT LUN 0 out of sync" "$DAEMON_LOG")
load_started remote 8 200
kill9_b
load_ok "B's kill -9"
(($(grep -c "copy remote of target $TGT LUN 0 out of sync" "$DAEMON_LOG") > outs)) ||
  fail "no new out-of-sync line for the remote copy after B's kill -9"
expect_grep "copy remote of target $TGT LUN 0: connection to $URL_B lost" "$DAEMON_LOG"
wait_state remote connecting 30
dirty=$(copy_field remote dirty_bytes)
log "dirty after B's kill -9: $dirty of $SIZE bytes"
((dirty > 0 && dirty <= 2 << 20 && dirty % REGION == 0)) ||
  fail "dirty bytes $dirty: not whole regions within the 2 MiB written"
cmp -s "$P" "$R" && fail "B's file holds the writes it missed"
log "B restarts on the same file"
start_b
wait_state remote in_sync 30
copied=$(($(resynced_total) - before))
log "resynced $copied bytes of $SIZE"
expect_eq "$copied" "$dirty" "bytes resynced after B's restart (only the dirty regions)"
((copied < SIZE / 16)) || fail "the resync copied $copied bytes: not much less than the LUN"
wait_grep "copy remote of target $TGT LUN 0: resync done: $dirty bytes copied" "$DAEMON_LOG" \
  "the resync's end" 30
same_bytes "$P" "$R" "after B's restart and the resync"
log "every acknowledged block reads back from B alone"
verify_acked "$URL_B" "$TMP/gen.bin" "read from B alone"

# --- (d) B stops answering (SIGSTOP): the copy errors within its command_timeout of 3 s --------
before=$(resynced_total)
load_started remote 8 200
scrape
quorum_before=$(metric "ringtgt_lun_mirrored_writes_total{$L,copies=\"quorum\"}")
kill -STOP "$B_PID"
stopped_at=$SECONDS
log "daemon B stopped (SIGSTOP) mid-write"
# GOOD at quorum does not wait for B: writes are answered while B is still
# counted in sync (before its command_timeout), the copy behind on them.
for ((i = 0; ; i++)); do
  scrape
  if [[ $(metric "ringtgt_lun_copy_state{$L,copy=\"remote\",state=\"in_sync\"}") != 1 ]]; then
    fail "no write was answered at quorum while B was stopped and still in sync (quorum writes: $quorum_before -> $(metric "ringtgt_lun_mirrored_writes_total{$L,copies=\"quorum\"}"))"
  fi
  if (($(metric "ringtgt_lun_mirrored_writes_total{$L,copies=\"quorum\"}") >= quorum_before + 50)) &&
    (($(metric "ringtgt_lun_copy_writes_behind{$L,copy=\"remote\"}") > 0)); then
    break
  fi
  ((i < 100)) || fail "the copy stayed in sync 10 s after B stopped"
  sleep 0.05
done
log "50 writes answered at quorum with B stopped and still in sync ($(metric "ringtgt_lun_copy_writes_behind{$L,copy=\"remote\"}") behind on it)"
wait_grep "copy remote of target $TGT LUN 0: connection to $URL_B lost: a command got no answer within 3000 ms" \
  "$DAEMON_LOG" "the bound on a command B does not answer" 20
((SECONDS - stopped_at <= 8)) || fail "the unanswered copy errored only after $((SECONDS - stopped_at)) s"
kill -CONT "$B_PID"
load_ok "B's SIGSTOP"
wait_state remote in_sync 30
copied=$(($(resynced_total) - before))
log "resynced $copied bytes after B answered again"
((copied > 0 && copied < SIZE / 16)) || fail "the resync after SIGSTOP copied $copied bytes"
same_bytes "$P" "$R" "after B answered again and the resync"

# --- (d2) B stops answering while A's LUN is idle: a NOP-Out ping finds it -----------------
log "daemon B stopped (SIGSTOP) with no I/O through A"
kill -STOP "$B_PID"
stopped_at=$SECONDS
wait_grep "copy remote of target $TGT LUN 0: connection to $URL_B lost: no answer to a NOP-Out ping within 3000 ms" \
  "$DAEMON_LOG" "A's ping of the idle copy" 20
((SECONDS - stopped_at <= 12)) || fail "the idle copy errored only after $((SECONDS - stopped_at)) s"
wait_state remote connecting 10
kill -CONT "$B_PID"
wait_state remote in_sync 30
same_bytes "$P" "$R" "after B answered again (idle)"

# --- (e) B's LUN made anew behind the same URL: a full sync, found by itself ---------------
# The probe of clean regions reads the start of region 0 (the verified loads'
# 2 MiB), 32 (8 MiB, written here) and 6 more: a new remote LUN lacks their
# data, and the resync copies every region, not only the dirty ones.
qemu_ok "$TMP/probe-block.out" "$URL" "write -P 0x6c 8M 4k"
kill9_b
rm -f "$R"
before=$(resynced_total)
start_b
wait_grep "copy remote of target $TGT LUN 0: its store differs from copy primary at byte (0|8388608), in a region no write missed: not the store it left .*a full sync" \
  "$DAEMON_LOG" "A's line about the remote LUN made anew" 30
wait_state remote in_sync 60
copied=$(($(resynced_total) - before))
log "the remote LUN made anew: $copied bytes resynced"
((copied >= SIZE)) || fail "the resync onto a remote LUN made anew copied $copied bytes, not the whole $SIZE"
same_bytes "$P" "$R" "after the resync onto B's LUN made anew"
# And the operator's way, copy replace, fills it in full as well.
before=$(resynced_total)
"$RINGTGTCTL" --socket "$TMP/admin.sock" copy replace --target "$TGT" --lun 0 --copy remote \
  >"$TMP/replace.out" || fail "copy replace of the remote copy failed: $(cat "$TMP/replace.out")"
expect_grep "store: iscsi://127.0.0.1:$PORT_B/$TGT_B/0; full sync: (started|once it connects)" \
  "$TMP/replace.out" "copy replace's answer"
wait_state remote in_sync 60
copied=$(($(resynced_total) - before))
log "copy replace of the remote copy: $copied bytes copied"
((copied >= SIZE)) || fail "the remote copy's replacement copied $copied bytes, not the whole $SIZE"
same_bytes "$P" "$R" "after the remote copy's replacement"
verify_acked "$URL_B" "$TMP/gen.bin" "after the replacement, read from B alone"

# --- (f) kill -9 of A itself mid-write: the hot regions are resynced onto B ------------------
load_started remote 20 200
kill9_daemon
wait "$BENCH" || true  # its connection to A is gone: it fails
hot=$(python3 - "$(ls "$TMP"/state/mirror-*.state)" <<'PY'
import sys
n = 0
for line in open(sys.argv[1]):
    f = line.split()
    if f and f[0] == "hot":
        n = sum(bin(int(w, 16)).count("1") for w in f[1:])
print(n)
PY
)
((hot > 0)) || fail "kill -9 of A mid-write left no hot region in its state file"
log "A killed mid-write with $hot hot region(s)"
before=$(stat -c %s "$R")
start_daemon "$TMP/a.toml" "$PORT"
expect_grep "did not stop cleanly: $hot region\(s\) had writes in flight; copy primary is their source" \
  "$DAEMON_LOG" "A's crash recovery line"
wait_state remote in_sync 60
copied=$(resynced_total)
log "after A's restart: $copied bytes resynced onto B"
((copied > 0 && copied <= hot * REGION)) || fail "A's restart resynced $copied bytes for $hot hot regions"
same_bytes "$P" "$R" "after A's kill -9 and restart"
# The bench saved its table after the cut too (a write cut in flight may
# read back either way): every acknowledged write reads back from B alone.
verify_acked "$URL_B" "$TMP/gen.bin" "after A's kill -9, read from B alone"

# --- (g) a reload replaces A's LU while qemu-io writes ---------------------------------------
# The new LU's store of the copy logs in to B as a session of its own (its
# ISID differs): it must not reinstate, and so cut off, the session the old
# LU still writes through.
log "(g) reload of A (resync_rate changed) while qemu-io writes"
lines=$(wc -l <"$DAEMON_LOG")
qemu_writes_started "$TMP/reload-w.out" "$URL" remote 0x4d 8M
sed -i 's|^  resync_region_size = "256K"$|&\n  resync_rate = "90M"|' "$TMP/a.toml"
"$RINGTGTCTL" --socket "$TMP/admin.sock" reload >"$TMP/reload.out" 2>&1 ||
  fail "the reload failed: $(cat "$TMP/reload.out")"
expect_grep "LUN 0: backing changed \(its copies or mirror settings\): replaced" "$TMP/reload.out" \
  "the reload's answer"
qemu_writes_ok "$TMP/reload-w.out" "across the reload"
tail -n +$((lines + 1)) "$DAEMON_LOG" >"$TMP/after-reload.log"
expect_no_grep "connection to $URL_B lost|out of sync" "$TMP/after-reload.log" \
  "A's log across the reload"
expect_eq "$(copy_field remote state)" in_sync "the remote copy after the reload"
same_bytes "$P" "$R" "after the reload under writes"

kill -0 "$DAEMON_PID" || fail "daemon A died"
stop_daemon_ok

# --- a remote LUN that does not fit is refused at start, naming the copy ---------------
# refused NAME SED WHAT: A's config changed by SED must not start, and its
# error must match WHAT (after the copy's file:line:col).
refused() {
  local cfg=$TMP/$1.toml rc=0
  sed -e "s|^state_dir = .*|state_dir = \"$TMP/state-$1\"|" -e "s|$P|$TMP/$1.img|" -e "$2" \
    "$TMP/a.toml" >"$cfg"
  timeout 30 "$RINGTGT_BIN" --config "$cfg" >"$TMP/$1.log" 2>&1 || rc=$?
  ((rc != 0 && rc != 124)) || { cat "$TMP/$1.log" >&2; fail "$1: A started (or hung: $rc)"; }
  expect_grep "$cfg:[0-9]+:5: copy remote of target $TGT LUN 0: $3" "$TMP/$1.log" "$1's error"
}
refused bigger 's|^  size = "64M"$|  size = "128M"|' \
  "iscsi://127.0.0.1:$PORT_B/$TGT_B/0: the remote LUN is 67108864 bytes, smaller than the primary \(134217728 bytes\)"
refused blocks "s|$TGT_B/0\"|$TGT_B/1\"|" \
  "iscsi://127.0.0.1:$PORT_B/$TGT_B/1: the remote LUN has 4096-byte blocks, this LUN 512-byte ones"
# stop_b: SIGTERM, and B must exit cleanly.
stop_b() {
  kill -TERM "$B_PID"
  wait "$B_PID" || fail "daemon B exited with an error after SIGTERM"
  B_PID=""
}

# --- CHAP: A logs in to a B that wants it; a wrong secret leaves the copy connecting ---
stop_b
umask 077
printf 'remote-copy-secret\n' >"$TMP/b.secret"
cp "$TMP/b.secret" "$TMP/a.secret"
printf 'not-the-right-one\n' >"$TMP/bad.secret"
sed "s|^name = \"$TGT_B\"$|&\nchap_user = \"mirror-a\"\nchap_secret_file = \"$TMP/b.secret\"|" \
  "$TMP/b.toml" >"$TMP/b-chap.toml"
grep -q '^chap_user = "mirror-a"$' "$TMP/b-chap.toml" || fail "B's CHAP config was not written"
start_b "$TMP/b-chap.toml"
# chap_config NAME SECRET: A's config as $TMP/NAME.toml, its copy logging in with SECRET.
chap_config() {
  sed -e "s|^state_dir = .*|state_dir = \"$TMP/state-$1\"|" -e "s|$P|$TMP/$1.img|" \
    -e "s|^    url = .*|&\n    chap_user = \"mirror-a\"\n    chap_secret_file = \"$2\"|" \
    "$TMP/a.toml" >"$TMP/$1.toml"
  grep -q '^    chap_user = "mirror-a"$' "$TMP/$1.toml" || fail "$1: the copy's CHAP keys were not written"
}
chap_config chap "$TMP/a.secret"
start_daemon "$TMP/chap.toml" "$PORT"
expect_grep "copy remote of target $TGT LUN 0: connected to $URL_B" "$DAEMON_LOG" "the CHAP login"
expect_eq "$(copy_field remote state)" in_sync "the copy logged in with CHAP"
stop_daemon_ok
chap_config chap-bad "$TMP/bad.secret"
start_daemon "$TMP/chap-bad.toml" "$PORT"
expect_grep "copy remote of target $TGT LUN 0: cannot connect to $URL_B: login refused" \
  "$DAEMON_LOG" "the login with a wrong CHAP secret"
wait_state remote connecting 30
stop_daemon_ok
stop_b
log "PASS"
