#!/usr/bin/env bash
# target.portals: a target limited to one portal is listed by SendTargets and
# reachable only through it; through another portal a login gets "target not
# found" (0x0203) and a log line. A target without the key is on every portal.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

P1=$(pick_port)
P2=$(pick_port)
ALPHA=iqn.2025-01.com.example:alpha
BETA=iqn.2025-01.com.example:beta
cat >"$TMP/ringtgt.toml" <<EOF
workers = 2
log_level = "info"
state_dir = "$TMP/state"

[[portal]]
listen = "127.0.0.1:$P1"

[[portal]]
listen = "127.0.0.1:$P2"

[[target]]
name = "$ALPHA"
portals = ["127.0.0.1:$P1"]

  [[target.lun]]
  number = 0
  path = "$TMP/alpha0.img"
  size = "16M"

[[target]]
name = "$BETA"

  [[target.lun]]
  number = 0
  path = "$TMP/beta0.img"
  size = "16M"
EOF
start_daemon "$TMP/ringtgt.toml" "$P1"
expect_grep "target $ALPHA: offered only on 127\\.0\\.0\\.1:$P1" "$DAEMON_LOG" "the limit logged at start"

run_ok "$TMP/ls1.txt" iscsi-ls "iscsi://127.0.0.1:$P1"
expect_grep "^Target:$ALPHA Portal:127\\.0\\.0\\.1:$P1,1\$" "$TMP/ls1.txt" "alpha listed on its portal"
expect_no_grep "^Target:$ALPHA Portal:127\\.0\\.0\\.1:$P2" "$TMP/ls1.txt" "alpha's address is only its portal"
expect_grep "^Target:$BETA Portal:127\\.0\\.0\\.1:$P2,1\$" "$TMP/ls1.txt" "beta on every portal"

run_ok "$TMP/ls2.txt" iscsi-ls "iscsi://127.0.0.1:$P2"
expect_no_grep "$ALPHA" "$TMP/ls2.txt" "alpha hidden from discovery on the other portal"
expect_grep "^Target:$BETA Portal:127\\.0\\.0\\.1:$P1,1\$" "$TMP/ls2.txt" "beta listed on the other portal"

run_ok "$TMP/inq1.txt" iscsi-inq "iscsi://127.0.0.1:$P1/$(iqn_url "$ALPHA")/0"
run_fails "$TMP/inq2.txt" iscsi-inq "iscsi://127.0.0.1:$P2/$(iqn_url "$ALPHA")/0"
expect_grep "target $ALPHA is not offered on portal 127\\.0\\.0\\.1:$P2 \\(target\\.portals\\)" \
  "$DAEMON_LOG" "the refusal logged"
expect_grep "login refused: .*target $ALPHA .*unknown_target" "$DAEMON_LOG" "answered target not found"
run_ok "$TMP/inq3.txt" iscsi-inq "iscsi://127.0.0.1:$P2/$(iqn_url "$BETA")/0"
stop_daemon_ok
