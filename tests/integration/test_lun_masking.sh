#!/usr/bin/env bash
# LUN masking: a LUN with allowed_initiators exists only for the initiators it
# names — absent from their REPORT LUNS listing for everyone else, and
# commands sent to it by others fail as for a LUN that does not exist.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

PORT=$(pick_port)
TARGET=iqn.2025-01.com.example:shared
FRIEND=iqn.2025-01.com.example:friend
OTHER=iqn.2025-01.com.example:other

cat >"$TMP/ringtgt.toml" <<CONF
workers = 1
state_dir = "$TMP/state"

[[portal]]
listen = "127.0.0.1:$PORT"

[[target]]
name = "$TARGET"

  [[target.lun]]
  number = 0
  path = "$TMP/open.img"
  size = "8M"

  [[target.lun]]
  number = 1
  path = "$TMP/private.img"
  size = "16M"
  allowed_initiators = ["$FRIEND"]
CONF

start_daemon "$TMP/ringtgt.toml" "$PORT"
expect_grep "target $TARGET LUN 1: visible only to $FRIEND" "$DAEMON_LOG" "masking announced"

log "the allowed initiator sees both LUNs"
run_ok "$TMP/ls_friend.txt" iscsi-ls -s -i "$FRIEND" "iscsi://127.0.0.1:$PORT"
expect_grep '^Lun:0 +Type:DIRECT_ACCESS' "$TMP/ls_friend.txt" "LUN 0 for the friend"
expect_grep '^Lun:1 +Type:DIRECT_ACCESS' "$TMP/ls_friend.txt" "LUN 1 for the friend"

log "another initiator sees only the open LUN"
run_ok "$TMP/ls_other.txt" iscsi-ls -s -i "$OTHER" "iscsi://127.0.0.1:$PORT"
expect_grep "^Target:$TARGET " "$TMP/ls_other.txt" "the target is still listed"
expect_grep '^Lun:0 +Type:DIRECT_ACCESS' "$TMP/ls_other.txt" "LUN 0 for the other initiator"
expect_no_grep '^Lun:1' "$TMP/ls_other.txt" "LUN 1 must be hidden from the other initiator"

url="iscsi://127.0.0.1:$PORT/$(iqn_url "$TARGET")"
log "direct access to the masked LUN"
run_ok "$TMP/inq_friend.txt" iscsi-inq -i "$FRIEND" "$url/1"
expect_grep '^Vendor:RINGTGT' "$TMP/inq_friend.txt" "INQUIRY of LUN 1 by the friend"
run_ok "$TMP/rc_friend.txt" iscsi-readcapacity16 -i "$FRIEND" "$url/1"
expect_grep '^Total size:16777216$' "$TMP/rc_friend.txt" "LUN 1 capacity for the friend"
run_fails "$TMP/inq_other.txt" iscsi-inq -i "$OTHER" "$url/1"
run_fails "$TMP/rc_other.txt" iscsi-readcapacity16 -i "$OTHER" "$url/1"
run_ok "$TMP/inq_other0.txt" iscsi-inq -i "$OTHER" "$url/0"
expect_grep '^Vendor:RINGTGT' "$TMP/inq_other0.txt" "LUN 0 stays open to the other initiator"

stop_daemon_ok
