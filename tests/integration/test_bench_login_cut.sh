#!/usr/bin/env bash
# ringtgt-bench gives up on logins that never complete, and leaks nothing:
#  1. the TCP connect stays pending (a listener whose accept queue is full
#     drops the SYN);
#  2. the connection is up but the login request is never answered.
# --timeout cuts both; the bench must say so and exit 1. libiscsi's
# iscsi_full_connect_async kept state for a login that only its callbacks
# free, and iscsi_destroy_context skips them before the login completes
# (libiscsi 1.19): LeakSanitizer turned that into an abort of the sanitizer
# soak when a relogin met a daemon being killed.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${RINGTGT_BENCH:=$(dirname "$RINGTGT_BIN")/bench/ringtgt-bench}"
[[ -x $RINGTGT_BENCH ]] || fail "RINGTGT_BENCH=$RINGTGT_BENCH is not executable"

# peer_says FILE LINE: waits (up to 10 s) for the helper peer's first line
# in FILE, which must be LINE.
peer_says() {
  for _ in $(seq 100); do
    grep -q . "$1" && break
    sleep 0.1
  done
  expect_line "$1" "$2"
}

PORT=$(pick_port)
# The holder listens with a backlog of 0 and never accepts; it fills the
# queue, checks that one more connect stays pending, then prints "full".
python3 - "$PORT" >"$TMP/holder.out" 2>&1 <<'PY' &
import select, socket, sys, time
port = int(sys.argv[1])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(0)
held = []
for _ in range(3):
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", port))
    held.append(c)
_, writable, _ = select.select([], [held[-1]], [], 1.5)
print("full" if not writable else "a connect completed: the queue is not full", flush=True)
time.sleep(600)
PY
bg_track $!
peer_says "$TMP/holder.out" full

# bench_cut PORT WHAT: two sessions to PORT time out their logins.
bench_cut() {
  local out=$TMP/bench.$1.out rc=0
  timeout 60 "$RINGTGT_BENCH" --url "iscsi://127.0.0.1:$1/iqn.2025-01.com.example:nobody/0" \
    --sessions 2 --timeout 1 --runtime 1 >"$out" 2>&1 || rc=$?
  expect_no_grep 'Sanitizer' "$out" "$2: nothing leaked"
  expect_eq "$rc" 1 "exit status of a bench whose logins never completed ($2)"
  expect_grep 'session 0 dropped: login timed out' "$out" "$2"
  expect_grep 'session 1 dropped: login timed out' "$out" "$2"
  log "$2: both logins cut after --timeout, nothing leaked"
}

bench_cut "$PORT" "TCP connect pending"

# The mute peer accepts every connection and reads what comes, answering nothing.
MUTE=$(pick_port)
python3 - "$MUTE" >"$TMP/mute.out" 2>&1 <<'PY' &
import socket, sys, threading
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(16)
print("listening", flush=True)
def drain(c):
    while c.recv(65536):
        pass
while True:
    c, _ = listener.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
PY
bg_track $!
peer_says "$TMP/mute.out" listening
bench_cut "$MUTE" "login request unanswered"
