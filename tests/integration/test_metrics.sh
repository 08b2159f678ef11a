#!/usr/bin/env bash
# /metrics: a known amount of I/O from a real initiator (qemu-io) shows up as
# exactly that many operations and bytes; refused logins count by reason; the
# session gauge follows a live session; the latency histograms are well formed;
# and every metric the Grafana dashboard uses exists in a scrape.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

command -v curl >/dev/null || fail "curl is missing (scripts/deps.sh installs it)"
command -v qemu-io >/dev/null || fail "qemu-io is missing (apt install qemu-utils qemu-block-extra)"
CHECK="python3 $RINGTGT_SRC/tests/integration/metrics_check.py"

PORT=$(pick_port)
MPORT=$(pick_port)
OPEN=iqn.2025-01.com.example:open
LOCKED=iqn.2025-01.com.example:locked
INITIATOR=iqn.2025-01.com.example:node2
SECRET=locked-secret-0123
mkdir -p "$TMP/secrets"
(umask 077 && printf '%s\n' "$SECRET" >"$TMP/secrets/locked")

config_prologue "$PORT" "$OPEN" >"$TMP/ringtgt.toml"
cat >>"$TMP/ringtgt.toml" <<CONF

  [[target.lun]]
  number = 0
  path = "$TMP/open.img"
  size = "16M"

[[target]]
name = "$LOCKED"
allowed_initiators = ["$INITIATOR"]
chap_user = "node2"
chap_secret_file = "$TMP/secrets/locked"

  [[target.lun]]
  number = 3
  path = "$TMP/locked.img"
  size = "8M"
    # A mirrored LUN, for the dashboard's replication row.
    [[target.lun.copy]]
    name = "disk2"
    path = "$TMP/locked-disk2.img"

[metrics]
listen = "127.0.0.1:$MPORT"
CONF

start_daemon "$TMP/ringtgt.toml" "$PORT"
expect_grep "metrics on http://127.0.0.1:$MPORT/metrics" "$DAEMON_LOG" "metrics endpoint announced"

N=0 # scrape counter
LAST=""
scrape() { # a fresh scrape in a new file, named in LAST
  N=$((N + 1))
  LAST="$TMP/scrape.$N.txt"
  curl -fsS --max-time 5 "http://127.0.0.1:$MPORT/metrics" -o "$LAST" || fail "GET /metrics failed"
}
val() { # FILE SERIES
  $CHECK "$1" value "$2" || fail "series $2 missing from $1"
}
L="target=\"$OPEN\",lun=\"0\""
LL="target=\"$LOCKED\",lun=\"3\""

scrape
S0=$LAST
for k in read write flush unmap other; do
  expect_eq "$(val "$S0" "ringtgt_lun_operations_total{$L,kind=\"$k\"}")" 0 "$k operations before any I/O"
done
expect_eq "$(val "$S0" "ringtgt_target_sessions{target=\"$OPEN\"}")" 0 "sessions before any login"
auth0=$(val "$S0" 'ringtgt_login_failures_total{reason="auth"}')
authz0=$(val "$S0" 'ringtgt_login_failures_total{reason="authorization"}')
attempts0=$(val "$S0" 'ringtgt_login_attempts_total')

log "qemu-io: 7 writes and 5 reads of 4 KiB"
WRITES=7
READS=5
args=()
for ((i = 0; i < WRITES; i++)); do args+=(-c "write -P 0x5a $((i * 4096)) 4k"); done
for ((i = 0; i < READS; i++)); do args+=(-c "read -P 0x5a $((i * 4096)) 4k"); done
URL="iscsi://127.0.0.1:$PORT/$(iqn_url "$OPEN")/0"
run_ok "$TMP/qemu.txt" qemu-io -f raw "${args[@]}" "$URL"
expect_no_grep "error|fail" "$TMP/qemu.txt" "qemu-io errors"

scrape
S1=$LAST
expect_eq "$(val "$S1" "ringtgt_lun_operations_total{$L,kind=\"write\"}")" $WRITES "write operations"
expect_eq "$(val "$S1" "ringtgt_lun_operations_total{$L,kind=\"read\"}")" $READS "read operations"
expect_eq "$(val "$S1" "ringtgt_lun_bytes_total{$L,kind=\"write\"}")" $((WRITES * 4096)) "bytes written"
expect_eq "$(val "$S1" "ringtgt_lun_bytes_total{$L,kind=\"read\"}")" $((READS * 4096)) "bytes read"
expect_eq "$(val "$S1" "ringtgt_lun_latency_seconds_count{$L,kind=\"write\"}")" $WRITES "write latency count"
expect_eq "$(val "$S1" "ringtgt_lun_latency_seconds_count{$L,kind=\"read\"}")" $READS "read latency count"
other=$(val "$S1" "ringtgt_lun_operations_total{$L,kind=\"other\"}")
((other > 0)) || fail "no INQUIRY / READ CAPACITY counted as kind=other ($other)"
expect_eq "$(val "$S1" "ringtgt_lun_commands_in_flight{$L}")" 0 "commands in flight when idle"
expect_eq "$(val "$S1" "ringtgt_lun_operations_total{$LL,kind=\"write\"}")" 0 "the other LUN saw no I/O"
nh=$($CHECK "$S1" histograms ringtgt_lun_latency_seconds) || fail "malformed latency histogram"
expect_eq "$nh" 10 "latency histograms (2 LUNs x 5 kinds)"
sum=$(val "$S1" "ringtgt_lun_latency_seconds_sum{$L,kind=\"write\"}")
python3 -c "import sys; sys.exit(0 if 0 < float('$sum') < 60 else 1)" ||
  fail "write latency sum $sum is not a positive number of seconds"
for w in 0 1; do
  busy=$(val "$S1" "ringtgt_reactor_busy_seconds_total{worker=\"$w\"}")
  python3 -c "import sys; sys.exit(0 if float('$busy') > 0 else 1)" ||
    fail "worker $w busy seconds $busy"
done

log "an open session shows in the session gauges"
qemu-io -f raw -c "sleep 4000" "$URL" >"$TMP/qemu-sleep.txt" 2>&1 &
bg_track $!
qpid=$!
sessions=0
for ((i = 0; i < 30; i++)); do
  scrape
  sessions=$(val "$LAST" "ringtgt_target_sessions{target=\"$OPEN\"}")
  [[ $sessions == 1 ]] && break
  sleep 0.1
done
expect_eq "$sessions" 1 "sessions while qemu-io is logged in"
expect_eq "$(val "$LAST" "ringtgt_target_connections{target=\"$OPEN\"}")" 1 "connections"
wait "$qpid" || fail "qemu-io sleep session failed"
for ((i = 0; i < 30; i++)); do
  scrape
  sessions=$(val "$LAST" "ringtgt_target_sessions{target=\"$OPEN\"}")
  [[ $sessions == 0 ]] && break
  sleep 0.1
done
expect_eq "$sessions" 0 "sessions after logout"

log "a failed CHAP login counts as reason=auth, a refused initiator as authorization"
LURL="iscsi://node2%wrong-secret-9999@127.0.0.1:$PORT/$(iqn_url "$LOCKED")/3"
run_fails "$TMP/inq-auth.txt" iscsi-inq -i "$INITIATOR" "$LURL"
scrape
S2=$LAST
expect_eq "$(val "$S2" 'ringtgt_login_failures_total{reason="auth"}')" $((auth0 + 1)) "auth failures"
expect_eq "$(val "$S2" 'ringtgt_login_failures_total{reason="authorization"}')" "$authz0" \
  "authorization failures unchanged by a CHAP failure"
run_fails "$TMP/inq-acl.txt" iscsi-inq -i iqn.2025-01.com.example:intruder \
  "iscsi://node2%$SECRET@127.0.0.1:$PORT/$(iqn_url "$LOCKED")/3"
scrape
S3=$LAST
expect_eq "$(val "$S3" 'ringtgt_login_failures_total{reason="authorization"}')" $((authz0 + 1)) \
  "authorization failures"
expect_eq "$(val "$S3" 'ringtgt_login_failures_total{reason="auth"}')" $((auth0 + 1)) \
  "auth failures unchanged by an ACL refusal"
# qemu-io twice (I/O and sleep) succeeded, two logins were refused.
expect_eq "$(val "$S3" 'ringtgt_login_attempts_total')" $((attempts0 + 4)) "login attempts"
val "$S3" 'ringtgt_digest_errors_total{kind="header"}' >/dev/null
val "$S3" 'ringtgt_digest_errors_total{kind="data"}' >/dev/null
val "$S3" 'ringtgt_pdu_rejects_total' >/dev/null

DASH="$RINGTGT_SRC/conf/grafana/ringtgt.json"
log "every metric the Grafana dashboard uses is in a scrape"
python3 -m json.tool "$DASH" >/dev/null || fail "$DASH is not valid JSON"
$CHECK "$S3" names >"$TMP/names.txt"
# Families as exposed, plus the _bucket/_sum/_count series of histograms.
grep -oE 'ringtgt_[a-z_]+' "$DASH" | sort -u >"$TMP/used.txt"
[[ -s $TMP/used.txt ]] || fail "the dashboard uses no ringtgt_ metric"
while read -r m; do
  grep -qx "$m" "$TMP/names.txt" || fail "dashboard metric $m is not in a scrape"
done <"$TMP/used.txt"
# The same for the names in its queries only (expr, template queries).
$CHECK "$S3" dashboard "$DASH" >/dev/null || fail "the dashboard's queries use metrics not in a scrape"

log "the endpoint answers only /metrics"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/nothing-here")
[[ $code == 404 ]] || fail "GET /nothing-here answered $code, expected 404"
stop_daemon_ok

log "a metrics port that is taken stops the start with a clear error"
python3 -c "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $MPORT)); s.listen(); time.sleep(30)" &
bg_track $!
for ((i = 0; i < 50; i++)); do port_listening "$MPORT" && break; sleep 0.1; done
rc=0
timeout 20 "$RINGTGT_BIN" --config "$TMP/ringtgt.toml" >"$TMP/taken.log" 2>&1 || rc=$?
((rc == 1)) || fail "daemon exit status $rc with the metrics port taken, expected 1"
expect_grep "metrics endpoint 127.0.0.1:$MPORT: cannot listen" "$TMP/taken.log" "the error names the address"
