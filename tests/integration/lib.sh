# Shared helpers for the integration tests: a temporary folder, a free loopback
# port, the daemon started in the background with its log in a file, and
# assertions that print what was expected and the daemon's log when they fail.
#
# Source it from a test script: . "$(dirname "$0")/lib.sh"
# Environment: RINGTGT_BIN (daemon binary), RINGTGT_SRC (repository root).

set -euo pipefail

: "${RINGTGT_BIN:?RINGTGT_BIN must name the ringtgt binary}"
: "${RINGTGT_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
[[ -x $RINGTGT_BIN ]] || { echo "FAIL: RINGTGT_BIN=$RINGTGT_BIN is not executable" >&2; exit 1; }

TEST_NAME=$(basename "$0" .sh)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ringtgt-${TEST_NAME}.XXXXXX")
DAEMON_PID=""
DAEMON_LOG=""
DAEMON_RC=""
declare -a PICKED_PORTS=()
declare -a ALL_LOGS=()
declare -a BG_PIDS=()

# bg_track PID: a background helper (initiator) that is killed on exit.
bg_track() { BG_PIDS+=("$1"); }

log() { printf '[%s %s] %s\n' "$TEST_NAME" "$(date +%T)" "$*"; }

# Prints the tail of every daemon log this test wrote.
dump_logs() {
  local f
  for f in "${ALL_LOGS[@]}"; do
    [[ -f $f ]] || continue
    echo "----- tail of daemon log $f -----" >&2
    tail -n 40 "$f" >&2
    echo "----- end of $f -----" >&2
  done
}

fail() {
  echo "FAIL [$TEST_NAME]: $*" >&2
  exit 1
}

_lib_on_exit() {
  local rc=$?
  trap - EXIT
  local p
  for p in "${BG_PIDS[@]}"; do
    # Only a still-running child of this shell, never a reused PID.
    if [[ $(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ') == "$$" ]]; then
      kill -KILL "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -KILL "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  if ((rc != 0)); then
    dump_logs
    echo "[$TEST_NAME] FAILED (exit $rc); temp dir removed: $TMP" >&2
  else
    echo "[$TEST_NAME] PASSED"
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap _lib_on_exit EXIT

# The ports tests pick from: 20000..59999, or RINGTGT_TEST_PORTS=LO-HI when
# several people test on one machine, each in a range of their own.
_port_range() {
  if [[ -n ${RINGTGT_TEST_PORTS:-} ]]; then
    [[ $RINGTGT_TEST_PORTS =~ ^([0-9]+)-([0-9]+)$ ]] || fail "RINGTGT_TEST_PORTS must be LO-HI"
    echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
  else
    echo "20000 59999"
  fi
}

# Prints a random free loopback TCP port of that range that nothing listens
# on and that this test has not handed out before.
pick_port() {
  local port tries=0 p taken lo hi
  read -r lo hi <<<"$(_port_range)"
  while ((tries++ < 200)); do
    port=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
    taken=0
    for p in "${PICKED_PORTS[@]}"; do [[ $p == "$port" ]] && taken=1; done
    ((taken)) && continue
    if ! ss -Htan "( sport = :$port )" | grep -q .; then
      PICKED_PORTS+=("$port")
      echo "$port"
      return 0
    fi
  done
  fail "no free TCP port found in $lo..$hi"
}

# pick_ceph_base: a port with the next 49 free too, for tests/ceph/cluster.sh
# (the monitor and the other Ceph daemons).
pick_ceph_base() {
  local base busy lo hi
  read -r lo hi <<<"$(_port_range)"
  for _ in $(seq 50); do
    base=$(pick_port)
    ((base + 49 <= hi)) || continue
    # TIME-WAIT leftovers of an earlier run do not stop a bind (SO_REUSEADDR).
    busy=$(ss -Htan exclude time-wait | awk '{print $4}' | sed 's/.*://' |
      awk -v b="$base" '$1 >= b && $1 <= b + 49' | head -n 1)
    [[ -z $busy ]] && { echo "$base"; return 0; }
  done
  fail "no 50 free ports in a row for the Ceph cluster"
}

# True when the port has a listening socket.
port_listening() {
  ss -Htln "( sport = :$1 )" | grep -q .
}

# True when ::1 is configured and usable.
have_ipv6_loopback() {
  [[ -e /proc/net/if_inet6 ]] && grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 &&
    python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null
}

# start_daemon CONFIG PORT [EXTRA ARGS...]: starts ringtgt in the background
# (log in $TMP/daemon.N.log, also in DAEMON_LOG) and waits up to 15 s until
# PORT accepts connections.
start_daemon() {
  local config=$1 port=$2
  shift 2
  [[ -z $DAEMON_PID ]] || fail "start_daemon: daemon $DAEMON_PID is already running"
  DAEMON_LOG="$TMP/daemon.${#ALL_LOGS[@]}.log"
  ALL_LOGS+=("$DAEMON_LOG")
  "$RINGTGT_BIN" --config "$config" "$@" >"$DAEMON_LOG" 2>&1 &
  DAEMON_PID=$!
  local i
  for ((i = 0; i < 150; i++)); do
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
      local rc=0
      wait "$DAEMON_PID" || rc=$?
      DAEMON_PID=""
      fail "daemon exited with status $rc during start-up (config $config)"
    fi
    if port_listening "$port"; then
      log "daemon $DAEMON_PID listening on port $port"
      return 0
    fi
    sleep 0.1
  done
  fail "daemon did not listen on port $port within 15 s"
}

# stop_daemon [TIMEOUT_S]: SIGTERM, wait up to TIMEOUT_S (default 10) for the
# exit, then SIGKILL and fail. The exit status lands in DAEMON_RC.
stop_daemon() {
  local timeout=${1:-10} i
  [[ -n $DAEMON_PID ]] || fail "stop_daemon: no daemon running"
  kill -TERM "$DAEMON_PID" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -KILL "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=""
    fail "daemon did not exit within ${timeout} s of SIGTERM (killed it)"
  fi
  DAEMON_RC=0
  wait "$DAEMON_PID" || DAEMON_RC=$?
  DAEMON_PID=""
  log "daemon stopped, exit status $DAEMON_RC"
}

# stop_daemon_ok: stop_daemon (10 s) and require exit status 0.
stop_daemon_ok() {
  stop_daemon 10
  [[ $DAEMON_RC == 0 ]] || fail "daemon exited with status $DAEMON_RC after SIGTERM, expected 0"
}

# kill9_daemon: SIGKILL, reap.
kill9_daemon() {
  [[ -n $DAEMON_PID ]] || fail "kill9_daemon: no daemon running"
  kill -KILL "$DAEMON_PID"
  wait "$DAEMON_PID" 2>/dev/null || true
  DAEMON_PID=""
  log "daemon killed with SIGKILL"
}

# Assertions ---------------------------------------------------------------

# expect_grep PATTERN FILE WHAT: FILE must contain a line matching the
# extended regex PATTERN.
expect_grep() {
  local pat=$1 file=$2 what=${3:-}
  if ! grep -Eq -- "$pat" "$file"; then
    echo "----- $file -----" >&2
    cat "$file" >&2
    fail "expected a line matching /$pat/ ${what:+($what)}"
  fi
}

# wait_grep PATTERN FILE WHAT [SECONDS]: until FILE has a line matching the
# extended regex PATTERN (polled, up to SECONDS, default 15); then as
# expect_grep.
wait_grep() {
  local i limit=${4:-15}
  for ((i = 0; i < limit * 10; i++)); do
    grep -Eq -- "$1" "$2" 2>/dev/null && return 0
    sleep 0.1
  done
  expect_grep "$1" "$2" "$3"
}

# expect_no_grep PATTERN FILE WHAT
expect_no_grep() {
  local pat=$1 file=$2 what=${3:-}
  if grep -Eq -- "$pat" "$file"; then
    echo "----- $file -----" >&2
    cat "$file" >&2
    fail "expected no line matching /$pat/ ${what:+($what)}"
  fi
}

# expect_eq GOT EXPECTED WHAT
expect_eq() {
  [[ $1 == "$2" ]] || fail "${3:-value}: expected '$2', got '$1'"
}

# run_ok OUT CMD...: runs CMD with stdout+stderr in OUT; fails with the
# output if it exits non-zero.
run_ok() {
  local out=$1 rc=0
  shift
  "$@" >"$out" 2>&1 || rc=$?
  if ((rc != 0)); then
    echo "----- output of: $* -----" >&2
    tail -n 40 "$out" >&2
    fail "command exited with status $rc, expected 0: $*"
  fi
}

# run_fails OUT CMD...: CMD must exit non-zero.
run_fails() {
  local out=$1 rc=0
  shift
  "$@" >"$out" 2>&1 || rc=$?
  if ((rc == 0)); then
    echo "----- output of: $* -----" >&2
    tail -n 40 "$out" >&2
    fail "command succeeded, expected it to fail: $*"
  fi
}

# sha_of FILE [BYTES]: sha256 of the first BYTES (default: all) of FILE.
sha_of() {
  if [[ -n ${2:-} ]]; then
    head -c "$2" "$1" | sha256sum | cut -d' ' -f1
  else
    sha256sum "$1" | cut -d' ' -f1
  fi
}

# url_escape_iqn IQN: libiscsi URLs want ':' in the target name as %3A.
iqn_url() { printf '%s' "${1//:/%3A}"; }

# config_prologue PORT TARGET: the start of a one-portal, one-target config
# (two workers, state under $TMP); the caller appends the [[target.lun]] tables.
config_prologue() {
  cat <<CONF
workers = 2
log_level = "info"
state_dir = "$TMP/state"

[[portal]]
listen = "127.0.0.1:$1"

[admin]
socket = "$TMP/admin.sock"

[[target]]
name = "$2"
CONF
}

# --- initiators that print what the target answered (test_faults.sh, test_mirror.sh) ---
# They need FAULT_TOOL (tests/tools/fault_tool.c) and qemu-io.

# tool OUT URL OPS...: one fault_tool session.
tool() {
  local out=$1 url=$2
  shift 2
  run_ok "$out" "$FAULT_TOOL" "$url" "$@"
}

# expect_line FILE LINE: FILE has exactly this line.
expect_line() {
  grep -Fxq -- "$2" "$1" || {
    cat "$1" >&2
    fail "expected the line '$2' in $1"
  }
}

# qemu OUT URL COMMANDS...: one qemu-io login; its output in OUT (not checked here).
qemu() {
  local out=$1 url=$2 args=() c
  shift 2
  for c in "$@"; do args+=(-c "$c"); done
  qemu-io -f raw "${args[@]}" "$url" >"$out" 2>&1 || true
}

# qemu_ok OUT URL COMMANDS...: every command must succeed.
qemu_ok() {
  qemu "$@"
  if grep -Eq 'failed|error|Error' "$1"; then
    cat "$1" >&2
    fail "qemu-io reported an error on $2"
  fi
}

# verified_load URL RANGE SECONDS ARGS...: ringtgt-bench's verified random
# read/write load (2 sessions, QD 8, 4 KiB) over the first RANGE bytes of the
# LUN; fails on any error or verify failure, or when it wrote or checked
# nothing. ARGS go to the bench (--save-state, --load-state, ...).
verified_load() {
  local out=$TMP/bench.$RANDOM rc=0 url=$1 range=$2 seconds=$3
  shift 3
  timeout 120 "$RINGTGT_BENCH" --url "$url" --json --verify --rw randrw --sessions 2 --qd 8 \
    --bs 4096 --runtime "$seconds" --range "$range" "$@" >"$out.json" 2>"$out.err" || rc=$?
  if ((rc != 0)); then
    cat "$out.err" "$out.json" >&2
    fail "ringtgt-bench --verify on $url exited $rc"
  fi
  python3 - "$out.json" <<'PY' || fail "the verified load on $url saw errors"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["errors"] == 0 and j["verify_failures"] == 0, j
assert j["write"]["ios"] > 0 and j["verify"]["blocks_checked"] > 0, j
PY
}

# --- a second daemon (B) beside start_daemon's (A): test_mirror_remote*.sh ---
B_PID=""
B_LOG=""
# b_config_prologue: the head of B's config (one worker, its own state dir
# and admin socket, portal PORT_B, target TGT_B); its LUNs follow.
b_config_prologue() {
  cat <<CONF
workers = 1
log_level = "info"
state_dir = "$TMP/state-b"

[[portal]]
listen = "127.0.0.1:$PORT_B"

[admin]
socket = "$TMP/admin-b.sock"

[[target]]
name = "$TGT_B"
CONF
}
# start_b [CONFIG]: B with CONFIG (default $TMP/b.toml), its pid in B_PID
# and its log in B_LOG; returns once it listens on PORT_B.
start_b() {
  B_LOG="$TMP/b.${#ALL_LOGS[@]}.log"
  ALL_LOGS+=("$B_LOG")
  "$RINGTGT_BIN" --config "${1:-$TMP/b.toml}" >"$B_LOG" 2>&1 &
  B_PID=$!
  bg_track "$B_PID"
  local i
  for ((i = 0; i < 150; i++)); do
    kill -0 "$B_PID" 2>/dev/null || fail "daemon B exited during start-up"
    port_listening "$PORT_B" && return 0
    sleep 0.1
  done
  fail "daemon B did not listen on port $PORT_B within 15 s"
}

# --- mirrored LUNs (test_mirror_resync.sh, test_mirror_remote.sh, test_mirror_replace.sh) ---
# They ask the daemon at $TMP/admin.sock about the copies of target $TGT.

# copy_field COPY FIELD: the field of COPY in `ringtgtctl copy list --json`.
copy_field() {
  "$RINGTGTCTL" --socket "$TMP/admin.sock" --json copy list --target "$TGT" >"$TMP/copies.json" ||
    fail "copy list failed"
  python3 - "$TMP/copies.json" "$1" "$2" <<'PY'
import json, sys
rows = [r for r in json.load(open(sys.argv[1])) if r["copy"] == sys.argv[2]]
assert len(rows) == 1, rows
v = rows[0][sys.argv[3]]
print("null" if v is None else v)
PY
}

# wait_state COPY STATE [SECONDS]: until copy list says so (polled, up to
# SECONDS, default 60).
wait_state() {
  local i limit=${3:-60}
  for ((i = 0; i < limit * 10; i++)); do
    [[ $(copy_field "$1" state) == "$2" ]] && return 0
    sleep 0.1
  done
  fail "copy $1 did not reach $2 within $limit s (it is $(copy_field "$1" state))"
}

# load_started COPY SECONDS [WRITES]: ringtgt-bench's verified load (as
# verified_load's, over the first 2 MiB of $URL, its table in $TMP/gen.bin)
# in the background (BENCH) for SECONDS; returns mid-write, once copy COPY
# took WRITES (default 100) of its writes. load_ok then checks it.
load_started() {
  local copy=$1 base i
  timeout 120 "$RINGTGT_BENCH" --url "$URL" --json --verify --rw randrw --sessions 2 --qd 8 \
    --bs 4096 --runtime "$2" --timeout 30 --range 2M --load-state "$TMP/gen.bin" \
    --save-state "$TMP/gen.bin" >"$TMP/load.json" 2>"$TMP/load.err" &
  BENCH=$!
  bg_track "$BENCH"
  base=$(copy_field "$copy" writes)
  for ((i = 0; i < 300; i++)); do
    (($(copy_field "$copy" writes) > base + ${3:-100})) && return 0
    sleep 0.1
  done
  fail "copy $copy took no writes of the load within 30 s"
}
# load_ok WHAT: the background load ended without an error or a lost write.
load_ok() {
  local rc=0
  wait "$BENCH" || rc=$?
  ((rc == 0)) || { cat "$TMP/load.err" "$TMP/load.json" >&2; fail "the load across $1 exited $rc"; }
  python3 - "$TMP/load.json" <<'PY' || fail "the load across $1 saw errors or lost writes"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["errors"] == 0 and j["verify_failures"] == 0, j
assert j["write"]["ios"] > 0 and j["verify"]["blocks_checked"] > 0, j
PY
}

# qemu_writes_started OUT URL COPY PATTERN AT: qemu-io writes 8 MiB of
# PATTERN from byte AT (a qemu-io size: 4M) in 256 KiB commands in the
# background (QEMU_PID; its output in OUT); returns once copy COPY took some
# of them. qemu-io's driver retries the unit attention a replaced LU starts
# with, as Linux does. qemu_writes_ok then checks them.
qemu_writes_started() {
  local out=$1 url=$2 copy=$3 cmds=() i base at_k
  at_k=$(($(numfmt --from=iec "$5") / 1024))
  for ((i = 0; i < 32; i++)); do cmds+=(-c "write -P $4 $((at_k + i * 256))k 256k"); done
  base=$(copy_field "$copy" writes)
  qemu-io -f raw "${cmds[@]}" "$url" >"$out" 2>&1 &
  QEMU_PID=$!
  bg_track "$QEMU_PID"
  for ((i = 0; i < 100; i++)); do
    (($(copy_field "$copy" writes) > base)) && return 0
    sleep 0.05
  done
  fail "copy $copy took no write of qemu-io's within 5 s"
}
# qemu_writes_ok OUT WHAT: the background writes all succeeded.
qemu_writes_ok() {
  wait "$QEMU_PID" || fail "$2: qemu-io exited non-zero: $(cat "$1")"
  if grep -Eq 'failed|error|Error' "$1"; then
    cat "$1" >&2
    fail "$2: a write failed"
  fi
}

# verify_acked URL STATE WHAT: every block of the LUN's first 2 MiB holds its
# last acknowledged write, as ringtgt-bench's saved STATE says (at least 512
# blocks checked).
verify_acked() {
  local rc=0
  timeout 120 "$RINGTGT_BENCH" --url "$1" --json --verify-only --bs 4096 --range 2M \
    --load-state "$2" >"$TMP/vo.json" 2>"$TMP/vo.err" || rc=$?
  ((rc == 0)) || { cat "$TMP/vo.err" "$TMP/vo.json" >&2; fail "$3: --verify-only exited $rc"; }
  python3 - "$TMP/vo.json" <<'PY' || fail "$3: blocks did not read back"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["errors"] == 0 and j["verify_failures"] == 0, j
assert j["verify"]["blocks_checked"] >= 512, j
PY
}

# same_bytes FILE_A FILE_B WHAT: the two files are equal, byte for byte.
same_bytes() { cmp "$1" "$2" >/dev/null || fail "$3: $1 and $2 differ ($(cmp "$1" "$2" | head -n 1))"; }
