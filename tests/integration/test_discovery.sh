#!/usr/bin/env bash
# Discovery (SendTargets) over IPv4 and IPv6 portals, LUN listing and sizes,
# and allowed_initiators: refused at login and hidden from discovery.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

PORT=$(pick_port)
PORT6=$(pick_port)
ALPHA=iqn.2025-01.com.example:alpha
BETA=iqn.2025-01.com.example:beta
FRIEND=iqn.2000-01.com.example:friend
INTRUDER=iqn.2000-01.com.example:intruder

ipv6=1
if ! have_ipv6_loopback; then
  ipv6=0
  echo "SKIP (sub-check): ::1 is not configured on this machine; the IPv6 portal checks are skipped"
fi

{
  cat <<EOF
workers = 2
log_level = "info"
state_dir = "$TMP/state"

[[portal]]
listen = "127.0.0.1:$PORT"
EOF
  if ((ipv6)); then
    cat <<EOF

[[portal]]
listen = "[::1]:$PORT6"
EOF
  fi
  cat <<EOF

[[target]]
name = "$ALPHA"
alias = "alpha"

  [[target.lun]]
  number = 0
  path = "$TMP/alpha0.img"
  size = "64M"

  [[target.lun]]
  number = 3
  path = "$TMP/alpha3.img"
  size = "16M"
  block_size = 4096

[[target]]
name = "$BETA"
alias = "beta"
allowed_initiators = ["$FRIEND"]

  [[target.lun]]
  number = 1
  path = "$TMP/beta1.img"
  size = "8M"
EOF
} >"$TMP/ringtgt.toml"

start_daemon "$TMP/ringtgt.toml" "$PORT"
if ((ipv6)); then
  for _ in $(seq 50); do port_listening "$PORT6" && break; sleep 0.1; done
  port_listening "$PORT6" || fail "daemon does not listen on the IPv6 portal [::1]:$PORT6"
fi

# check_listing FILE SEES_BETA: the iscsi-ls -s output in FILE lists alpha
# (LUNs 0 and 3) on every portal, and beta (LUN 1) exactly when SEES_BETA=1.
check_listing() {
  local f=$1 sees_beta=$2 portals=("127.0.0.1:$PORT")
  ((ipv6)) && portals+=("\\[::1\\]:$PORT6")
  local p
  for p in "${portals[@]}"; do
    expect_grep "^Target:$ALPHA Portal:$p,1\$" "$f" "alpha on portal $p"
    if ((sees_beta)); then
      expect_grep "^Target:$BETA Portal:$p,1\$" "$f" "beta on portal $p for an allowed initiator"
    fi
  done
  if ((!sees_beta)); then
    expect_no_grep "$BETA" "$f" "beta must be hidden from an initiator not in allowed_initiators"
  fi
  # libiscsi 1.19's iscsi-ls prints (last LBA) * block size, rounded down to
  # MiB: 64M -> 63M. The exact capacities are asserted with readcapacity16.
  expect_grep '^Lun:0 +Type:DIRECT_ACCESS \(Size:6[34]M\)$' "$f" "alpha LUN 0, 64 MiB"
  expect_grep '^Lun:3 +Type:DIRECT_ACCESS \(Size:1[56]M\)$' "$f" "alpha LUN 3, 16 MiB"
  local n
  n=$(grep -c '^Target:' "$f")
  if ((sees_beta)); then
    expect_eq "$n" "$((2 * ${#portals[@]}))" "number of Target: lines"
    expect_grep '^Lun:1 +Type:DIRECT_ACCESS \(Size:[78]M\)$' "$f" "beta LUN 1, 8 MiB"
    expect_eq "$(grep -c '^Lun:' "$f")" "$((3 * ${#portals[@]}))" "number of Lun: lines"
  else
    expect_eq "$n" "${#portals[@]}" "number of Target: lines"
    expect_eq "$(grep -c '^Lun:' "$f")" "$((2 * ${#portals[@]}))" "number of Lun: lines"
  fi
}

log "discovery over IPv4 as the allowed initiator"
run_ok "$TMP/ls4.txt" iscsi-ls -i "$FRIEND" -s "iscsi://127.0.0.1:$PORT"
check_listing "$TMP/ls4.txt" 1

log "discovery with libiscsi's default initiator name (not allowed on beta)"
run_ok "$TMP/lsdef.txt" iscsi-ls -s "iscsi://127.0.0.1:$PORT"
check_listing "$TMP/lsdef.txt" 0

log "discovery as the intruder"
run_ok "$TMP/lsint.txt" iscsi-ls -i "$INTRUDER" -s "iscsi://127.0.0.1:$PORT"
check_listing "$TMP/lsint.txt" 0

if ((ipv6)); then
  log "discovery over the IPv6 portal"
  run_ok "$TMP/ls6.txt" iscsi-ls -i "$FRIEND" -s "iscsi://[::1]:$PORT6"
  check_listing "$TMP/ls6.txt" 1
  log "I/O path over IPv6: readcapacity16 on alpha LUN 0"
  run_ok "$TMP/rc6.txt" iscsi-readcapacity16 "iscsi://[::1]:$PORT6/$ALPHA/0"
  expect_grep '^Total size:67108864$' "$TMP/rc6.txt" "alpha LUN 0 over IPv6"
  expect_grep "peer \\[::1\\]:[0-9]+ session normal" "$DAEMON_LOG" "a normal session logged in from ::1"
fi

log "exact capacities"
run_ok "$TMP/rc.txt" iscsi-readcapacity16 "iscsi://127.0.0.1:$PORT/$ALPHA/0"
expect_grep '^RETURNED LOGICAL BLOCK ADDRESS:131071$' "$TMP/rc.txt" "alpha LUN 0 last LBA"
expect_grep '^LOGICAL BLOCK LENGTH IN BYTES:512$' "$TMP/rc.txt" "alpha LUN 0 block size"
run_ok "$TMP/rc.txt" iscsi-readcapacity16 "iscsi://127.0.0.1:$PORT/$ALPHA/3"
expect_grep '^RETURNED LOGICAL BLOCK ADDRESS:4095$' "$TMP/rc.txt" "alpha LUN 3 last LBA"
expect_grep '^LOGICAL BLOCK LENGTH IN BYTES:4096$' "$TMP/rc.txt" "alpha LUN 3 block size"
run_ok "$TMP/rc.txt" iscsi-readcapacity16 -i "$FRIEND" "iscsi://127.0.0.1:$PORT/$BETA/1"
expect_grep '^Total size:8388608$' "$TMP/rc.txt" "beta LUN 1 size"

log "login ACL: the intruder is refused, the friend gets in"
run_fails "$TMP/inq_int.txt" iscsi-inq -i "$INTRUDER" "iscsi://127.0.0.1:$PORT/$BETA/1"
expect_grep 'Authorization failure' "$TMP/inq_int.txt" "login status for a refused initiator"
expect_grep "login refused: initiator $INTRUDER target $BETA" "$DAEMON_LOG" \
  "the daemon log names the refused initiator"
run_fails "$TMP/inq_def.txt" iscsi-inq "iscsi://127.0.0.1:$PORT/$BETA/1"
run_ok "$TMP/inq_ok.txt" iscsi-inq -i "$FRIEND" "iscsi://127.0.0.1:$PORT/$BETA/1"
expect_grep '^Vendor:RINGTGT' "$TMP/inq_ok.txt" "INQUIRY through an allowed login"
# A target without allowed_initiators takes anyone.
run_ok "$TMP/inq_alpha.txt" iscsi-inq -i "$INTRUDER" "iscsi://127.0.0.1:$PORT/$ALPHA/0"
expect_grep '^Vendor:RINGTGT' "$TMP/inq_alpha.txt" "INQUIRY on an open target"

log "a LUN that does not exist"
run_fails "$TMP/inq_nolun.txt" iscsi-readcapacity16 "iscsi://127.0.0.1:$PORT/$ALPHA/7"
log "a target that does not exist"
run_fails "$TMP/inq_notgt.txt" iscsi-inq "iscsi://127.0.0.1:$PORT/iqn.2025-01.com.example:nosuch/0"

stop_daemon_ok
