#!/usr/bin/env bash
# CHAP (RFC 7143 §12.1.3) with libiscsi's tools: one-way and mutual CHAP on
# targets, CHAP on discovery sessions, wrong or missing credentials refused,
# secrets kept out of the log, and a secret file readable by others refused at
# start-up with an error that names it.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

PORT=$(pick_port)
ONEWAY=iqn.2025-01.com.example:oneway
MUTUAL=iqn.2025-01.com.example:mutual
INITIATOR=iqn.2025-01.com.example:node2

ALICE_SECRET=alice-secret-0123
BOB_SECRET=bob-secret-456789
TARGET_SECRET=target-secret-abcdef
DISC_SECRET=discovery-secret-xyz

mkdir -p "$TMP/secrets"
secret() { # NAME VALUE: a 0600 secret file
  (umask 077 && printf '%s\n' "$2" >"$TMP/secrets/$1")
}
secret alice "$ALICE_SECRET"
secret bob "$BOB_SECRET"
secret target "$TARGET_SECRET"
secret discovery "$DISC_SECRET"

cat >"$TMP/ringtgt.toml" <<CONF
workers = 1
log_level = "debug"
state_dir = "$TMP/state"

[[portal]]
listen = "127.0.0.1:$PORT"

[discovery]
chap_user = "disc"
chap_secret_file = "secrets/discovery"

[[target]]
name = "$ONEWAY"
chap_user = "alice"
chap_secret_file = "secrets/alice"

  [[target.lun]]
  number = 0
  path = "$TMP/oneway.img"
  size = "8M"

[[target]]
name = "$MUTUAL"
chap_user = "bob"
chap_secret_file = "$TMP/secrets/bob"
mutual_user = "tgt"
mutual_secret_file = "$TMP/secrets/target"

  [[target.lun]]
  number = 0
  path = "$TMP/mutual.img"
  size = "8M"
CONF

start_daemon "$TMP/ringtgt.toml" "$PORT"
expect_grep "target $ONEWAY: CHAP required \\(user alice\\)" "$DAEMON_LOG" "CHAP announced"
expect_grep "target $MUTUAL: CHAP required \\(user bob, mutual\\)" "$DAEMON_LOG" "mutual announced"

url() { # USER%PASSWORD TARGET
  printf 'iscsi://%s@127.0.0.1:%s/%s/0' "$1" "$PORT" "$(iqn_url "$2")"
}

log "one-way CHAP: the right secret logs in"
run_ok "$TMP/inq1.txt" iscsi-inq -i "$INITIATOR" "$(url "alice%$ALICE_SECRET" "$ONEWAY")"
expect_grep '^Vendor:RINGTGT' "$TMP/inq1.txt" "INQUIRY after CHAP login"

log "one-way CHAP: wrong secret, wrong user and no credentials are refused"
run_fails "$TMP/inq2.txt" iscsi-inq -i "$INITIATOR" "$(url "alice%wrong-secret-999" "$ONEWAY")"
expect_grep "login refused: .*$ONEWAY.*wrong response for user 'alice'" "$DAEMON_LOG" \
  "the log says why (wrong secret)"
run_fails "$TMP/inq3.txt" iscsi-inq -i "$INITIATOR" "$(url "mallory%$ALICE_SECRET" "$ONEWAY")"
expect_grep "unknown CHAP_N 'mallory'" "$DAEMON_LOG" "the log names the unknown user"
run_fails "$TMP/inq4.txt" iscsi-inq -i "$INITIATOR" "iscsi://127.0.0.1:$PORT/$(iqn_url "$ONEWAY")/0"
# libiscsi without credentials skips the security stage: not authenticated.
expect_grep "auth_failed \\(operational stage reached without authentication" "$DAEMON_LOG" \
  "a login without CHAP refused on a CHAP target"
# Another target's credentials do not open this one.
run_fails "$TMP/inq5.txt" iscsi-inq -i "$INITIATOR" "$(url "bob%$BOB_SECRET" "$ONEWAY")"

log "mutual CHAP: the initiator checks the target's answer"
export LIBISCSI_CHAP_TARGET_USERNAME=tgt LIBISCSI_CHAP_TARGET_PASSWORD=$TARGET_SECRET
run_ok "$TMP/inq6.txt" iscsi-inq -i "$INITIATOR" "$(url "bob%$BOB_SECRET" "$MUTUAL")"
expect_grep '^Vendor:RINGTGT' "$TMP/inq6.txt" "INQUIRY after mutual CHAP login"
log "mutual CHAP: an initiator expecting another target secret refuses the target"
LIBISCSI_CHAP_TARGET_PASSWORD=not-the-target-secret \
  run_fails "$TMP/inq7.txt" iscsi-inq -i "$INITIATOR" "$(url "bob%$BOB_SECRET" "$MUTUAL")"
log "mutual CHAP asked of a target without mutual credentials fails"
run_fails "$TMP/inq8.txt" iscsi-inq -i "$INITIATOR" "$(url "alice%$ALICE_SECRET" "$ONEWAY")"
expect_grep "no mutual credentials" "$DAEMON_LOG" "mutual CHAP without mutual credentials"
unset LIBISCSI_CHAP_TARGET_USERNAME LIBISCSI_CHAP_TARGET_PASSWORD
log "mutual target, one-way login (the initiator does not ask): allowed"
run_ok "$TMP/inq9.txt" iscsi-inq -i "$INITIATOR" "$(url "bob%$BOB_SECRET" "$MUTUAL")"

log "discovery CHAP"
run_ok "$TMP/ls1.txt" iscsi-ls -i "$INITIATOR" "iscsi://disc%$DISC_SECRET@127.0.0.1:$PORT"
expect_grep "^Target:$ONEWAY Portal:127.0.0.1:$PORT,1\$" "$TMP/ls1.txt" "discovery lists oneway"
expect_grep "^Target:$MUTUAL Portal:127.0.0.1:$PORT,1\$" "$TMP/ls1.txt" "discovery lists mutual"
run_fails "$TMP/ls2.txt" iscsi-ls -i "$INITIATOR" "iscsi://127.0.0.1:$PORT"
run_fails "$TMP/ls3.txt" iscsi-ls -i "$INITIATOR" "iscsi://disc%wrong-secret-999@127.0.0.1:$PORT"

log "no secret in the log"
for s in "$ALICE_SECRET" "$BOB_SECRET" "$TARGET_SECRET" "$DISC_SECRET"; do
  expect_no_grep "$s" "$DAEMON_LOG" "a secret in the daemon log"
done
stop_daemon_ok

log "a secret file readable by others is refused at start-up"
chmod 0644 "$TMP/secrets/bob"
rc=0
timeout 10 "$RINGTGT_BIN" --config "$TMP/ringtgt.toml" >"$TMP/bad.log" 2>&1 || rc=$?
((rc != 0 && rc != 124)) || fail "daemon started (or hung) with a 0644 secret file (status $rc)"
expect_grep "secret file \"$TMP/secrets/bob\" has mode 0644" "$TMP/bad.log" \
  "the error names the secret file and its mode"
expect_no_grep "$BOB_SECRET" "$TMP/bad.log" "the secret in the error"
