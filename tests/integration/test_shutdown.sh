#!/usr/bin/env bash
# Process lifecycle: SIGTERM under write load exits 0 promptly with a shutdown
# line in the log; bad configs, a missing config and a bad --log-level are
# refused with a useful message; --version and --help work.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

PORT=$(pick_port)
TGT=iqn.2025-01.com.example:shutdown
{ config_prologue "$PORT" "$TGT"; cat <<EOF; } >"$TMP/ringtgt.toml"

  [[target.lun]]
  number = 0
  path = "$TMP/lun0.img"
  size = "64M"
EOF

log "--version and --help"
run_ok "$TMP/version.txt" "$RINGTGT_BIN" --version
expect_grep '^ringtgt [0-9]+\.[0-9]+\.[0-9]+' "$TMP/version.txt" "--version prints 'ringtgt X.Y.Z'"
run_ok "$TMP/help.txt" "$RINGTGT_BIN" --help
expect_grep '^Usage: ringtgt --config FILE' "$TMP/help.txt" "--help prints the usage"
expect_grep '--log-level' "$TMP/help.txt" "--help mentions --log-level"

log "refusals"
run_fails "$TMP/noargs.txt" "$RINGTGT_BIN"
expect_grep '--config' "$TMP/noargs.txt" "no arguments: says --config is required"
run_fails "$TMP/unknown.txt" "$RINGTGT_BIN" --bogus-flag
expect_grep 'bogus-flag' "$TMP/unknown.txt" "an unknown argument is named"
run_fails "$TMP/missing.txt" "$RINGTGT_BIN" --config "$TMP/does-not-exist.toml"
expect_grep 'does-not-exist\.toml' "$TMP/missing.txt" "a missing config file is named"
run_fails "$TMP/badlevel.txt" "$RINGTGT_BIN" --config "$TMP/ringtgt.toml" --log-level loud
expect_grep 'loud' "$TMP/badlevel.txt" "a bad --log-level is named"
if port_listening "$PORT"; then fail "daemon with a bad --log-level is listening on $PORT"; fi

# A typo in a key (line 12, column 3) ...
sed 's/^  size = "64M"$/  sise = "64M"/' "$TMP/ringtgt.toml" >"$TMP/typo.toml"
expect_grep '^  sise' "$TMP/typo.toml" "test setup: typo config"
line=$(grep -n '^  sise' "$TMP/typo.toml" | cut -d: -f1)
run_fails "$TMP/typo.txt" "$RINGTGT_BIN" --config "$TMP/typo.toml"
expect_grep "typo\\.toml:$line:3" "$TMP/typo.txt" "the unknown key is located at file:$line:3"
# ... a value out of range ...
sed 's/^  size = "64M"$/  size = "64M"\n  block_size = 1000/' "$TMP/ringtgt.toml" >"$TMP/range.toml"
line=$(grep -n 'block_size = 1000' "$TMP/range.toml" | cut -d: -f1)
run_fails "$TMP/range.txt" "$RINGTGT_BIN" --config "$TMP/range.toml"
expect_grep "range\\.toml:$line:[0-9]+" "$TMP/range.txt" "block_size = 1000 is located at file:$line:col"
# ... and broken TOML syntax.
printf 'workers = 2\nlog_level = "info\n' >"$TMP/syntax.toml"
run_fails "$TMP/syntax.txt" "$RINGTGT_BIN" --config "$TMP/syntax.toml"
expect_grep 'syntax\.toml:[0-9]+:[0-9]+' "$TMP/syntax.txt" "a TOML syntax error is located at file:line:col"
if port_listening "$PORT"; then fail "a daemon with a bad config is listening on $PORT"; fi

log "--log-level overrides the config"
start_daemon "$TMP/ringtgt.toml" "$PORT" --log-level warn
expect_no_grep ' info ' "$DAEMON_LOG" "--log-level warn hides info lines"
stop_daemon_ok

# sigterm_under_load CYCLE: a fresh daemon, a qemu-io loop of 1 MiB writes,
# SIGTERM once 20+ writes are done; exit 0 within 10 s, with the shutdown
# lines. Repeated because the hang it once caught was intermittent.
sigterm_under_load() {
  local cycle=$1 i qpid n_before t0 t1
  log "cycle $cycle: SIGTERM during a qemu-io write loop"
  start_daemon "$TMP/ringtgt.toml" "$PORT"
  local cmds=()
  for ((i = 0; i < 4000; i++)); do
    cmds+=(-c "write -P $((i % 200 + 1)) $(((i % 60) * 1048576)) 1M")
  done
  : >"$TMP/qio.txt"
  qemu-io -f raw "${cmds[@]}" "iscsi://127.0.0.1:$PORT/$TGT/0" >"$TMP/qio.txt" 2>&1 &
  qpid=$!
  bg_track "$qpid"
  for ((i = 0; i < 100; i++)); do
    (($(grep -c '^wrote ' "$TMP/qio.txt" || true) >= 20)) && break
    kill -0 "$qpid" 2>/dev/null || break
    sleep 0.1
  done
  sleep 0.5
  n_before=$(grep -c '^wrote ' "$TMP/qio.txt" || true)
  kill -0 "$qpid" 2>/dev/null || {
    tail "$TMP/qio.txt" >&2
    fail "qemu-io finished before SIGTERM; the load was too short"
  }
  ((n_before >= 20)) || fail "only $n_before 1 MiB writes completed before SIGTERM, expected at least 20"
  log "cycle $cycle: $n_before writes done; sending SIGTERM"
  t0=$(date +%s%N)
  # Bug seen while writing this test: the daemon logs "shutting down" and then
  # sometimes hangs for good in Server::~Server -> Worker::join.
  stop_daemon 10
  t1=$(date +%s%N)
  log "cycle $cycle: daemon exited after $(((t1 - t0) / 1000000)) ms with status $DAEMON_RC"
  # qemu's libiscsi keeps trying to reconnect; it is not under test here.
  kill -KILL "$qpid" 2>/dev/null || true
  wait "$qpid" 2>/dev/null || true
  expect_eq "$DAEMON_RC" 0 "exit status after SIGTERM under load"
  expect_grep 'received Terminated' "$DAEMON_LOG" "the signal is logged"
  expect_grep 'shutting down' "$DAEMON_LOG" "a shutdown line"
  expect_grep 'info stopped$' "$DAEMON_LOG" "the final 'stopped' line"
  if port_listening "$PORT"; then fail "port $PORT still listening after the daemon exited"; fi
}

# Beyond the range the load rewrites: must survive every shutdown.
start_daemon "$TMP/ringtgt.toml" "$PORT"
run_ok "$TMP/qio0.txt" qemu-io -f raw -c "write -P 0xab $((63 * 1048576)) 1M" "iscsi://127.0.0.1:$PORT/$TGT/0"
stop_daemon_ok

for cycle in 1 2 3; do sigterm_under_load "$cycle"; done

log "the daemon restarts on the same port and the data is there"
start_daemon "$TMP/ringtgt.toml" "$PORT"
run_ok "$TMP/qio2.txt" qemu-io -f raw -c "read -P 0xab $((63 * 1048576)) 1M" "iscsi://127.0.0.1:$PORT/$TGT/0"
expect_no_grep 'Pattern verification failed' "$TMP/qio2.txt" "the 1 MiB written before the load survived"
stop_daemon_ok
