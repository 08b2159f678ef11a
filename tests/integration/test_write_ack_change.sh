#!/usr/bin/env bash
# A live change of write_ack never weakens a promise an initiator already holds
# (issue 21). An initiator reads the caching mode page when it attaches a disk
# (tests/integration/cache_view.py does as Linux does), so one logged in while a
# LUN goes writethrough -> writeback would keep sending no flushes:
#   - reload with the weaker policy while a session uses the target: deferred,
#     said in the answer and the log, the LUN still writethrough (WCE=0);
#   - the session gone, the same reload applies it: a new login sees WCE=1;
#   - writeback -> writethrough applies at once under a session, with the
#     page cache flushed: a new login sees WCE=0;
#   - reload --force applies the weaker policy under a session, with a warning.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${RINGTGTCTL:?RINGTGTCTL must name the ringtgtctl binary}"
PORT=$(pick_port)
TGT=iqn.2025-01.com.example:ackchange
SOCK="$TMP/admin.sock"
ctl() { "$RINGTGTCTL" --socket "$SOCK" "$@"; }
view() { timeout 60 python3 "$RINGTGT_SRC/tests/integration/cache_view.py" 127.0.0.1 "$PORT" "$TGT" "$@"; }

write_config() { # write_config WRITE_ACK
  {
    config_prologue "$PORT" "$TGT"
    cat <<CONF

  [[target.lun]]
  number = 0
  path = "$TMP/lun0.img"
  size = "16M"
  write_ack = "$1"

[iscsi]
nop_interval = 0
CONF
  } >"$TMP/ringtgt.toml"
}

# hold N: a session that reads the caching page, then stays logged in until
# $TMP/release.N exists; waits for its "logged-in" line.
hold() {
  view --hold "$TMP/release.$1" >"$TMP/hold.$1.out" 2>&1 &
  HOLDER=$!
  bg_track "$HOLDER"
  local i
  for ((i = 0; i < 300; i++)); do
    grep -q '^logged-in$' "$TMP/hold.$1.out" && return 0
    kill -0 "$HOLDER" 2>/dev/null || break
    sleep 0.1
  done
  cat "$TMP/hold.$1.out" >&2
  fail "holder $1 did not log in"
}

# release N: the holder logs out; waits until the daemon lists no session.
release() {
  touch "$TMP/release.$1"
  wait "$HOLDER" || fail "holder $1 failed: $(cat "$TMP/hold.$1.out")"
  local i
  for ((i = 0; i < 300; i++)); do
    ctl --json session list >"$TMP/sessions.json"
    python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])) == [] else 1)' \
      "$TMP/sessions.json" && return 0
    sleep 0.1
  done
  fail "the daemon still lists a session after holder $1 logged out"
}

write_config writethrough
start_daemon "$TMP/ringtgt.toml" "$PORT"
run_ok "$TMP/view0.out" view
expect_grep '^WCE=0$' "$TMP/view0.out" "a writethrough LUN reports WCE=0"

log "writethrough -> writeback while a session uses the target: deferred"
hold 1
expect_grep '^WCE=0$' "$TMP/hold.1.out" "the holder attached a write-through disk"
write_config writeback
run_ok "$TMP/reload1.out" ctl reload
cat "$TMP/reload1.out"
expect_grep "^deferred: target $TGT LUN 0: write_ack writethrough -> writeback not applied while sessions use the target" \
  "$TMP/reload1.out" "the reload answer says the change waits"
expect_no_grep "^applied:" "$TMP/reload1.out" "nothing applied"
expect_grep "warning admin: target $TGT LUN 0: write_ack writethrough -> writeback not applied" \
  "$DAEMON_LOG" "the deferral logged as a warning"
run_ok "$TMP/lunlist1.out" ctl --json lun list --target "$TGT"
python3 -c 'import json,sys; l=json.load(open(sys.argv[1]))[0]; assert l["write_ack"]=="writethrough", l' \
  "$TMP/lunlist1.out" || fail "the running LUN is not writethrough any more"
kill -HUP "$DAEMON_PID"
for ((i = 0; i < 300; i++)); do
  grep -q "reload done" "$DAEMON_LOG" && break
  sleep 0.1
done
expect_grep "reload done: 0 change\(s\) applied" "$DAEMON_LOG" "SIGHUP defers it too"
release 1

log "the session gone, the same reload applies it"
run_ok "$TMP/reload2.out" ctl reload
expect_grep "^applied: target $TGT LUN 0: backing changed .*write_ack writethrough -> writeback" \
  "$TMP/reload2.out" "the weaker policy applied with no session"
run_ok "$TMP/view2.out" view
expect_grep '^WCE=1$' "$TMP/view2.out" "a new login sees the write-back cache"

log "writeback -> writethrough under a session: at once, cache flushed"
hold 2
expect_grep '^WCE=1$' "$TMP/hold.2.out" "the holder attached a write-back disk"
write_config writethrough
run_ok "$TMP/reload3.out" ctl reload
expect_grep "^applied: target $TGT LUN 0: backing changed .*write_ack writeback -> writethrough" \
  "$TMP/reload3.out" "the stronger policy applied at once"
expect_no_grep "^deferred:" "$TMP/reload3.out" "a stronger policy is never deferred"
expect_grep "target $TGT LUN 0: write_ack writeback -> writethrough: cached writes flushed" \
  "$DAEMON_LOG" "what writeback cached was flushed"
run_ok "$TMP/view3.out" view
expect_grep '^WCE=0$' "$TMP/view3.out" "a new login sees write-through"

log "reload --force applies the weaker policy under the session, with a warning"
write_config writeback
run_ok "$TMP/reload4.out" ctl reload --force
expect_grep "^applied: target $TGT LUN 0: backing changed .*write_ack writethrough -> writeback" \
  "$TMP/reload4.out" "forced"
expect_grep "warning admin: write_ack writethrough -> writeback applied under [0-9]+ logged-in session\(s\) of target $TGT" \
  "$DAEMON_LOG" "the forced weakening warned about"
release 2
stop_daemon_ok
