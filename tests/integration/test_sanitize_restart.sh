#!/usr/bin/env bash
# SANITIZE across a crash (SBC-4 r22 4.33.2: a sanitize interrupted by a power
# on is resumed). A SANITIZE OVERWRITE (IMMED) starts on a 256 MiB LUN that
# allows it; once TEST UNIT READY answers NOT READY, SANITIZE IN PROGRESS
# (02h/04h/1Bh) the daemon is killed with SIGKILL. Its state file stays in
# state_dir; the restarted daemon logs that it runs the sanitize again,
# answers NOT READY, SANITIZE IN PROGRESS again, and ends with every block
# holding the pattern and the state file gone. A LUN without allow_sanitize
# refuses SANITIZE (INVALID COMMAND OPERATION CODE) with a log line.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

SANITIZE_TOOL=${SANITIZE_TOOL:-$(dirname "$RINGTGT_BIN")/tests/sanitize_tool}
[[ -x $SANITIZE_TOOL ]] || fail "sanitize_tool not found (set SANITIZE_TOOL): $SANITIZE_TOOL"

PORT=$(pick_port)
TGT=iqn.2025-01.com.example:sanitize
url() { printf 'iscsi://127.0.0.1:%s/%s/%s' "$PORT" "$(iqn_url "$TGT")" "$1"; }
{
  config_prologue "$PORT" "$TGT"
  cat <<EOF2

  [[target.lun]]
  number = 0
  path = "$TMP/lun0.img"
  size = "256M"
  provisioning = "full"
  allow_sanitize = true
  sanitize_rate = "64M"   # 4 s an OVERWRITE: the kill lands in the middle

  [[target.lun]]
  number = 1
  path = "$TMP/lun1.img"
  size = "16M"
EOF2
} >"$TMP/ringtgt.toml"
mkdir -p "$TMP/state"

start_daemon "$TMP/ringtgt.toml" "$PORT"

log "a LUN without allow_sanitize refuses it"
run_ok "$TMP/refused.txt" "$SANITIZE_TOOL" "$(url 1)" block-erase
expect_grep '^SENSE 5/20/00$' "$TMP/refused.txt" "INVALID COMMAND OPERATION CODE"
expect_grep 'SANITIZE from .* refused .*allow_sanitize is not set' "$DAEMON_LOG" "refusal logged"

log "SANITIZE OVERWRITE (IMMED) of LUN 0, then SIGKILL while it runs"
run_ok "$TMP/start.txt" "$SANITIZE_TOOL" "$(url 0)" overwrite 0xa5
expect_grep '^GOOD$' "$TMP/start.txt" "SANITIZE with IMMED"
run_ok "$TMP/tur1.txt" "$SANITIZE_TOOL" "$(url 0)" tur
expect_grep '^SENSE 2/04/1b$' "$TMP/tur1.txt" "SANITIZE IN PROGRESS before the kill"
kill9_daemon
state=$(find "$TMP/state" -name 'sanitize-*.state')
[[ -n $state ]] || fail "no sanitize state file in $TMP/state after the kill"
expect_grep '^action overwrite$' "$state" "the state file names the operation"
# The pattern has not reached the end of the LUN: the kill came mid-way.
[[ $(tail -c 512 "$TMP/lun0.img" | od -v -An -tx1 | tr -d ' \n' | tr -d 0) == "" ]] ||
  fail "the last block was overwritten before the kill: the test did not interrupt the sanitize"

log "restart: the sanitize runs again"
start_daemon "$TMP/ringtgt.toml" "$PORT"
expect_grep 'SANITIZE was in progress before the restart' "$DAEMON_LOG" "resume announced"
run_ok "$TMP/tur2.txt" "$SANITIZE_TOOL" "$(url 0)" tur
expect_grep '^SENSE 2/04/1b$' "$TMP/tur2.txt" "SANITIZE IN PROGRESS after the restart"
run_ok "$TMP/wait.txt" "$SANITIZE_TOOL" "$(url 0)" wait 300
# The last sense before GOOD: the sanitize, or the power-on unit attention of
# this new nexus, which a sanitize in progress reports after its own sense.
expect_grep '^GOOD after (2/04/1b|6/29/00)$' "$TMP/wait.txt" "the sanitize ends"
expect_grep 'SANITIZE overwrite done' "$DAEMON_LOG" "completion logged"
[[ ! -e $state ]] || fail "the state file $state is still there after the sanitize ended"
for lba in 0 262143 524287; do
  run_ok "$TMP/read.txt" "$SANITIZE_TOOL" "$(url 0)" read "$lba"
  expect_grep '^a5 a5$' "$TMP/read.txt" "LBA $lba holds the pattern"
done
stop_daemon_ok
