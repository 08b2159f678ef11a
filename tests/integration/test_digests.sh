#!/usr/bin/env bash
# Header and data digests (CRC32C) with a Python initiator (libiscsi offers
# only DataDigest=None): data written and read back with every digest checked,
# then corrupted digests get RFC 7143 7.8's answer and a log line, and other
# sessions keep working (tests/hostile/digests.py).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || fail "python3 is missing"
PORT=$(pick_port)
TGT=iqn.2025-01.com.example:digests
{
  config_prologue "$PORT" "$TGT"
  cat <<CONF

  [[target.lun]]
  number = 0
  path = "$TMP/lun0.img"
  size = "16M"

[iscsi]
header_digest = true
data_digest = true
max_recv_data_segment_length = 8192
CONF
} >"$TMP/ringtgt.toml"
start_daemon "$TMP/ringtgt.toml" "$PORT"

run_ok "$TMP/digests.out" timeout 300 python3 "$RINGTGT_SRC/tests/hostile/digests.py" \
  127.0.0.1 "$PORT" "$TGT"
cat "$TMP/digests.out"
expect_grep '^4 passed, 0 failed$' "$TMP/digests.out" "every digest scenario"

init='iqn\.2025-01\.com\.example:digests'
expect_grep "peer 127\.0\.0\.1:[0-9]+ session normal .*\(digests\)" "$DAEMON_LOG" "sessions used digests"
expect_grep "\($init\): data digest error on opcode 0x0 .*rejected and discarded" "$DAEMON_LOG" \
  "the NOP-Out data digest error logged"
expect_grep "\($init\): data digest error on opcode 0x1 .*closing the connection" "$DAEMON_LOG" \
  "the WRITE data digest error logged"
expect_grep "\($init\): header digest error .*closing the connection" "$DAEMON_LOG" \
  "the header digest error logged"
stop_daemon_ok
