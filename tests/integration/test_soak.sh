#!/usr/bin/env bash
# Soak under chaos (issue 15, bounded mode; bench/soak.sh is the long one).
#
# Two targets of two thin LUNs each; one ringtgt-bench per LUN, SOAK_SESSIONS
# sessions each, doing verified READs, WRITEs, overlapping WRITE pairs,
# COMPARE AND WRITE and UNMAP, while each bench's chaos driver (--chaos, a
# seed printed for replay) sends ABORT TASK / ABORT TASK SET / LU RESET /
# TARGET WARM RESET and drops its TCP connections mid-transfer; every dropped
# session logs in again with the same initiator name and ISID (reinstatement).
# The bench drops a connection itself (closes its socket with commands and
# Data-Out in flight) rather than going through a cutting TCP proxy or being
# killed: it keeps its table of acknowledged writes across the drop, and the
# target sees the same thing, a connection gone mid-transfer.
#   Phase 1: chaos; afterwards, once every session has logged out, the
#            daemon's open fds equal their starting count and its VmRSS is
#            within SOAK_RSS_SLACK_KIB of its starting value.
#   Phase 2: chaos again from the saved tables while this script kill -9s the
#            daemon at a random time and restarts it; the benches come back.
#   Phase 3: every LUN re-read against its table (--verify-only --load-state):
#            no acknowledged write lost, no aborted write landing after its
#            abort's answer; every session logs in again.
# No bench may report a verify failure or a session that could not log in
# again; the daemon must not die except when killed here.
# Environment: SOAK_SEED (default random, printed), SOAK_SESSIONS (per LUN,
# default 5), SOAK_RUNTIME (seconds per phase, default 20), SOAK_CHAOS
# (events per second per bench, default 3).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${RINGTGT_BENCH:=$(dirname "$RINGTGT_BIN")/bench/ringtgt-bench}"
: "${RINGTGTCTL:=$(dirname "$RINGTGT_BIN")/ringtgtctl}"
[[ -x $RINGTGT_BENCH ]] || fail "RINGTGT_BENCH=$RINGTGT_BENCH is not executable"
[[ -x $RINGTGTCTL ]] || fail "RINGTGTCTL=$RINGTGTCTL is not executable"
command -v python3 >/dev/null || fail "python3 is missing"

SEED=${SOAK_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
SESSIONS=${SOAK_SESSIONS:-5}
RUNTIME=${SOAK_RUNTIME:-20}
CHAOS=${SOAK_CHAOS:-3}
# Buffers the workers keep for reuse and allocator arenas stay after a load.
RSS_SLACK_KIB=${SOAK_RSS_SLACK_KIB:-65536}
# Under AddressSanitizer (test.sh's sanitizer pass) freed memory is held in
# its quarantine, up to 256 MiB by default, before it is reused: the bound
# makes room for it, and LeakSanitizer checks for leaks when the daemon stops.
if grep -q __asan_init "$RINGTGT_BIN"; then
  RSS_SLACK_KIB=$((RSS_SLACK_KIB + 262144))
  log "AddressSanitizer build: VmRSS may grow by its quarantine (slack $RSS_SLACK_KIB KiB)"
fi
log "seed $SEED (replay: SOAK_SEED=$SEED), $SESSIONS sessions x 4 LUNs, ${RUNTIME} s per phase"
RANDOM=$SEED

PORT=${SOAK_PORT:-$(pick_port)}
TGTS=(iqn.2025-01.com.example:soak-a iqn.2025-01.com.example:soak-b)
# lun_tables T: the two LUNs of target T.
lun_tables() {
  local l
  for l in 0 1; do
    printf '\n  [[target.lun]]\n  number = %d\n  path = "%s"\n  size = "16M"\n  block_size = 512\n  provisioning = "thin"\n' \
      "$l" "$TMP/lun$1$l.img"
  done
}
{
  config_prologue "$PORT" "${TGTS[0]}"
  lun_tables 0
  printf '\n[[target]]\nname = "%s"\n' "${TGTS[1]}"
  lun_tables 1
  printf '\n[limits]\nmax_sessions = %d\nmax_sessions_per_initiator = %d\n' \
    $((8 * SESSIONS + 64)) $((2 * SESSIONS + 4))
} >"$TMP/ringtgt.toml"

# daemon_rss_kib, daemon_fds: from /proc.
daemon_rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON_PID/status"; }
daemon_fds() { find "/proc/$DAEMON_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }
# fds_back_to N: the daemon's open fds, once they are back to N (bounded: 20 s).
# A connection whose session ended may still be closing its socket (the
# close goes through the reactor's ring); a leaked fd never comes back.
fds_back_to() {
  local i n
  for ((i = 0; i < 200; i++)); do
    n=$(daemon_fds)
    ((n <= $1)) && break
    sleep 0.1
  done
  echo "$n"
}

# sessions_logged_in: the daemon's count of normal sessions (admin socket).
sessions_logged_in() {
  "$RINGTGTCTL" --socket "$TMP/admin.sock" --json session list |
    python3 -c 'import json,sys; j=json.load(sys.stdin); s=j.get("sessions", j) if isinstance(j, dict) else j; print(len(s))'
}

# wait_no_sessions: until the daemon holds no session (bounded: 20 s).
wait_no_sessions() {
  local i n
  for ((i = 0; i < 200; i++)); do
    n=$(sessions_logged_in)
    ((n == 0)) && return 0
    sleep 0.1
  done
  fail "$n session(s) still logged in 20 s after every initiator left"
}

# LUN 0 of each target takes 8 KiB commands (immediate data, one Data-In);
# LUN 1 takes 128 KiB ones, which go out in R2T-solicited Data-Out bursts and
# come back in several Data-In PDUs: the drops and aborts then also cut
# transfers in the middle.
BS=(8k 128k)

url() { printf 'iscsi://127.0.0.1:%s/%s/%s' "$PORT" "$(iqn_url "${TGTS[$1]}")" "$2"; }

declare -a BENCH_PIDS=()
# start_benches PHASE [load]: one chaos bench per LUN in the background
# (with "load": continuing from the table the previous phase saved).
start_benches() {
  local phase=$1 load=${2:-} t l i=0
  local -a more
  BENCH_PIDS=()
  for t in 0 1; do
    for l in 0 1; do
      more=()
      [[ -n $load ]] && more=(--load-state "$TMP/load$t$l.bin")
      "$RINGTGT_BENCH" --url "$(url "$t" "$l")" --initiator-name "iqn.2025-01.com.example:soak-$t$l" \
        --verify --rw randrw --bs "${BS[$l]}" --qd 4 --sessions "$SESSIONS" --range 8M \
        --caw-pct 10 --unmap-pct 10 --overlap-pct 15 --chaos "$CHAOS" --seed $((SEED * 16 + phase * 4 + i)) \
        --runtime "$RUNTIME" --timeout 5 --relogin-timeout 30 --quiet \
        --save-state "$TMP/state$t$l.bin" "${more[@]}" >"$TMP/bench.$phase.$t$l.out" 2>&1 &
      BENCH_PIDS+=($!)
      bg_track $!
      i=$((i + 1))
    done
  done
}

# wait_benches PHASE: every bench exits 0 (its table and chaos lines are shown).
wait_benches() {
  local phase=$1 k=0 t l rc
  for t in 0 1; do
    for l in 0 1; do
      rc=0
      wait "${BENCH_PIDS[$k]}" || rc=$?
      k=$((k + 1))
      # An aborted bench printed none of these lines; its tail follows.
      grep -E '^(total|errors|verify|ops|chaos):' "$TMP/bench.$phase.$t$l.out" | sed "s/^/  [$phase LUN $t$l] /" || true
      if ((rc != 0)); then
        tail -n 30 "$TMP/bench.$phase.$t$l.out" >&2
        fail "phase $phase: bench on target $t LUN $l exited $rc (verify failure or a session that did not come back)"
      fi
      expect_grep '^verify: [0-9]+ blocks checked, 0 failures' "$TMP/bench.$phase.$t$l.out" "phase $phase LUN $t$l"
    done
  done
}

start_daemon "$TMP/ringtgt.toml" "$PORT"
rss0=$(daemon_rss_kib)
fds0=$(daemon_fds)
log "start: VmRSS $rss0 KiB, $fds0 open fds"

log "phase 1: chaos (TMFs, connection drops, reinstatement)"
start_benches 1
wait_benches 1
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died during phase 1"
wait_no_sessions
fds1=$(fds_back_to "$fds0")
rss1=$(daemon_rss_kib)
log "after phase 1, no session left: VmRSS $rss1 KiB (start $rss0), $fds1 open fds (start $fds0)"
expect_eq "$fds1" "$fds0" "open fds once every session logged out"
((rss1 <= rss0 + RSS_SLACK_KIB)) ||
  fail "VmRSS $rss1 KiB after phase 1 is more than $RSS_SLACK_KIB KiB above its start ($rss0 KiB)"
for t in 0 1; do
  for l in 0 1; do
    expect_grep 'relogins [1-9]' "$TMP/bench.1.$t$l.out" "LUN $t$l: sessions reinstated"
  done
done

log "phase 2: chaos plus kill -9 and restart of the daemon"
for t in 0 1; do for l in 0 1; do cp "$TMP/state$t$l.bin" "$TMP/load$t$l.bin"; done; done
start_benches 2 load
# The kill comes once every bench is logged in (the daemon logs each login),
# after a random delay: the chaos timing.
for ((w = 0; w < 150; w++)); do
  (($(sessions_logged_in) >= 4 * SESSIONS)) && break
  sleep 0.1
done
delay=$((2 + RANDOM % 6))
log "kill -9 of the daemon after ${delay} s of load"
sleep "$delay"
kill9_daemon
start_daemon "$TMP/ringtgt.toml" "$PORT"
wait_benches 2
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died during phase 2"
wait_no_sessions

log "phase 3: every acknowledged write reads back; every session logs in again"
for t in 0 1; do
  for l in 0 1; do
    run_ok "$TMP/verify.$t$l.out" timeout 60 "$RINGTGT_BENCH" --url "$(url "$t" "$l")" \
      --initiator-name "iqn.2025-01.com.example:soak-$t$l" --sessions "$SESSIONS" --verify-only \
      --bs 64k --range 8M --load-state "$TMP/state$t$l.bin"
    grep '^verify:' "$TMP/verify.$t$l.out" | sed "s/^/  [verify LUN $t$l] /"
    expect_grep '^verify: 16384 blocks checked, 0 failures' "$TMP/verify.$t$l.out" "LUN $t$l"
  done
done
expect_no_grep 'AddressSanitizer|runtime error|terminate called|Assertion' "$DAEMON_LOG" "no crash"
stop_daemon_ok
