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
expect_grep '^5 passed, 0 failed$' "$TMP/digests.out" "every digest scenario"

init='iqn\.2025-01\.com\.example:digests'
expect_grep "peer 127\.0\.0\.1:[0-9]+ session normal .*\(header and data digests\)" "$DAEMON_LOG" \
  "sessions used digests"
expect_grep "\($init\): data digest error on opcode 0x0 .*rejected and discarded" "$DAEMON_LOG" \
  "the NOP-Out data digest error logged"
expect_grep "\($init\): data digest error on opcode 0x1 .*closing the connection" "$DAEMON_LOG" \
  "the WRITE data digest error logged"
expect_grep "\($init\): header digest error .*closing the connection" "$DAEMON_LOG" \
  "the header digest error logged"
stop_daemon_ok

# libiscsi (iscsi-test-cu, qemu) offers HeaderDigest=None,CRC32C and DataDigest=None:
# with header_digest = "required" the target takes CRC32C, so the conformance
# tests below run with a CRC32C on every PDU header; a login that offers only
# None is refused.
log "iscsi-test-cu with header digests required"
PORT2=$(pick_port)
{
  config_prologue "$PORT2" "$TGT"
  cat <<CONF

  [[target.lun]]
  number = 0
  path = "$TMP/lun1.img"
  size = "64M"

[iscsi]
header_digest = "required"
CONF
} >"$TMP/required.toml"
start_daemon "$TMP/required.toml" "$PORT2"
URL="iscsi://127.0.0.1:$PORT2/$TGT/0"
for t in ALL.Read10.Simple ALL.Write10.Simple ALL.Read16.Simple ALL.Write16.Simple \
  ALL.CompareAndWrite.Simple ALL.iSCSIResiduals.Write10Residuals ALL.iSCSIResiduals.Read10Residuals \
  ALL.Inquiry.Standard ALL.iSCSITMF.AbortTaskSimpleAsync ALL.Unmap.Simple; do
  run_ok "$TMP/$t.out" timeout 120 iscsi-test-cu -d -t "$t" "$URL"
  python3 "$RINGTGT_SRC/tests/conformance/classify.py" "$TMP/$t.out" 0 >"$TMP/$t.verdict"
  grep -qx passed "$TMP/$t.verdict" || fail "$t with header digests: $(cat "$TMP/$t.verdict")"
done
expect_grep "initiator iqn\.2007-10\.com\.github:sahlberg:libiscsi:iscsi-test .*\(header digest\)" \
  "$DAEMON_LOG" "iscsi-test-cu sessions used header digests"
! grep -q "libiscsi:iscsi-test .*(no digests)" "$DAEMON_LOG" || fail "an iscsi-test-cu session ran without digests"
run_ok "$TMP/qemu-hd.out" qemu-io -f raw -c "write -P 0x7e 0 64k" -c "read -P 0x7e 0 64k" "$URL"
# An initiator that offers no digest (the Python peer sends no HeaderDigest key).
python3 - "$RINGTGT_SRC/tests/hostile" "$PORT2" "$TGT" >"$TMP/nodigest.out" 2>&1 <<'PY' ||
import sys
sys.path.insert(0, sys.argv[1])
from peer import Peer
p = Peer("127.0.0.1", int(sys.argv[2]))
try:
    p.login(sys.argv[3])
except RuntimeError as e:
    print("refused:", e)
    sys.exit(0)
print("logged in without a digest")
sys.exit(1)
PY
  fail "a login without header digests was not refused: $(cat "$TMP/nodigest.out")"
expect_grep "refused: operational login failed: 0x2/0x0" "$TMP/nodigest.out" "login status 0x0200"
expect_grep "login refused: .*: negotiation \(the initiator offered HeaderDigest=None and this target requires CRC32C \(header_digest = \"required\"\)\)" \
  "$DAEMON_LOG" "the refusal logged with its reason"
stop_daemon_ok

# The negotiation table, one daemon per setting (no key: the default, "allowed"):
# the initiator's offer decides unless the setting forbids or requires CRC32C, and
# an initiator that insists on what the setting refuses gets login status 0x0200,
# a warning naming the key, its offer and the setting, and a login failure counted
# under reason="negotiation" (never a "session normal" line).
for setting in default allowed never required; do
  log "digest negotiation with ${setting} digests"
  P=$(pick_port)
  M=$(pick_port)
  {
    config_prologue "$P" "$TGT"
    cat <<CONF

  [[target.lun]]
  number = 0
  path = "$TMP/lun2.img"
  size = "16M"

[metrics]
listen = "127.0.0.1:$M"
CONF
    if [[ $setting != default ]]; then
      printf '\n[iscsi]\nheader_digest = "%s"\ndata_digest = "%s"\n' "$setting" "$setting"
    fi
  } >"$TMP/$setting.toml"
  start_daemon "$TMP/$setting.toml" "$P"
  table=$setting
  [[ $setting == default ]] && table=allowed
  run_ok "$TMP/table-$setting.out" timeout 120 python3 \
    "$RINGTGT_SRC/tests/hostile/digest_negotiation.py" 127.0.0.1 "$P" "$TGT" "$table"
  cat "$TMP/table-$setting.out"
  expect_grep '^4 passed, 0 failed$' "$TMP/table-$setting.out" "the $setting negotiation table"
  curl -fsS --max-time 5 "http://127.0.0.1:$M/metrics" -o "$TMP/metrics-$setting.txt" ||
    fail "GET /metrics failed"
  refused=$(awk '/^ringtgt_login_failures_total\{reason="negotiation"\}/{print $2}' \
    "$TMP/metrics-$setting.txt")
  case $table in
    allowed)
      expect_eq "${refused:-missing}" 0 "negotiation failures with $setting digests"
      expect_grep "session normal .*\(header and data digests\)" "$DAEMON_LOG" "a CRC32C session"
      expect_grep "session normal .*\(no digests\)" "$DAEMON_LOG" "a session without digests"
      ;;
    never)
      expect_eq "${refused:-missing}" 1 "negotiation failures with never"
      expect_grep "warning login refused: initiator iqn\.2025-01\.com\.example:digest-table .*: negotiation \(the initiator offered HeaderDigest=CRC32C and this target allows None only \(header_digest = \"never\"\)\)" \
        "$DAEMON_LOG" "the refusal of CRC32C logged as a warning"
      expect_no_grep "\((header and data digests|header digest|data digest)\)$" "$DAEMON_LOG" \
        "no session with digests"
      ;;
    required)
      expect_eq "${refused:-missing}" 1 "negotiation failures with required"
      expect_no_grep "\(no digests\)" "$DAEMON_LOG" "no session without digests"
      ;;
  esac
  stop_daemon_ok
done
