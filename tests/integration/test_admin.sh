#!/usr/bin/env bash
# Administration of a running daemon through ringtgtctl and its admin socket:
# a LUN added live shows up in iscsi-ls, grows (iscsi-readcapacity16 sees it),
# cannot be removed while a session uses its target unless forced (then the
# session's next command fails, no hang); reload of an edited config while a
# qemu-io write/verify loop runs on an untouched LUN (no error, data verified),
# a broken config refused whole (the old one keeps serving), config write;
# a peer that is not permitted, and malformed or hostile JSON-RPC messages.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${RINGTGTCTL:=$(dirname "$RINGTGT_BIN")/ringtgtctl}"
[[ -x $RINGTGTCTL ]] || fail "RINGTGTCTL=$RINGTGTCTL is not executable"
command -v qemu-io >/dev/null || fail "qemu-io is missing (apt install qemu-utils qemu-block-extra)"

PORT=$(pick_port)
T1=iqn.2025-01.com.example:steady
T2=iqn.2025-01.com.example:live
SOCK=$TMP/run/admin.sock
CONF=$TMP/ringtgt.toml
ctl() { "$RINGTGTCTL" --socket "$SOCK" "$@"; }

write_config() { # extra lines for T2 come from $1
  cat >"$CONF" <<CONF
workers = 2
log_level = "info"
state_dir = "$TMP/state"

[[portal]]
listen = "127.0.0.1:$PORT"

[admin]
socket = "$SOCK"

[[target]]
name = "$T1"
  [[target.lun]]
  number = 1
  path = "$TMP/steady.img"
  size = "16M"

[[target]]
name = "$T2"
  [[target.lun]]
  number = 0
  path = "$TMP/live0.img"
  size = "4M"
${1:-}
CONF
}
write_config
start_daemon "$CONF" "$PORT"
for ((i = 0; i < 50; i++)); do [[ -S $SOCK ]] && break; sleep 0.1; done
[[ -S $SOCK ]] || fail "admin socket $SOCK did not appear"
[[ $(stat -c %a "$SOCK") == 660 ]] || fail "admin socket mode $(stat -c %a "$SOCK"), expected 660"

run_ok "$TMP/version.out" ctl version
expect_grep '^ringtgt [0-9.]+, up [0-9]+s' "$TMP/version.out" "version answer"
run_ok "$TMP/targets.out" ctl target list
expect_grep "^$T1 +1 +0 +no" "$TMP/targets.out" "target list row of $T1"

log "lun add: a new sparse file, seen by iscsi-ls"
run_ok "$TMP/add.out" ctl lun add --target "$T2" --lun 2 --path "$TMP/live2.img" --size 8M
expect_grep "LUN 2: added" "$TMP/add.out"
[[ $(stat -c %s "$TMP/live2.img") == 8388608 ]] || fail "live2.img is not 8 MiB"
run_ok "$TMP/ls1.out" iscsi-ls -s "iscsi://127.0.0.1:$PORT"
expect_grep "Lun:2 +Type:DIRECT_ACCESS" "$TMP/ls1.out" "the added LUN in iscsi-ls"
run_ok "$TMP/lunlist.out" ctl --json lun list --target "$T2"
python3 - "$TMP/lunlist.out" "$TMP/live2.img" <<'PY' || fail "lun list --json does not describe LUN 2"
import json, sys
luns = {l["lun"]: l for l in json.load(open(sys.argv[1]))}
l = luns[2]
assert l["size"] == 8388608 and l["block_size"] == 512 and l["path"] == sys.argv[2], l
assert l["write_ack"] == "writethrough" and l["read_only"] is False, l
PY
run_fails "$TMP/dup.out" ctl lun add --target "$T2" --lun 2 --path "$TMP/other.img" --size 1M
expect_grep "has a LUN 2 already" "$TMP/dup.out"
run_fails "$TMP/bs.out" ctl lun add --target "$T2" --lun 5 --path "$TMP/x.img" --size 1M --block-size 1000
expect_grep "block_size must be 512 or 4096" "$TMP/bs.out"
log "lun add: every [[target.lun]] key, by the config file's rules"
run_ok "$TMP/add5.out" ctl lun add --target "$T2" --lun 5 --path "$TMP/live5.img" --size 1M \
  --provisioning full --physical-block-size 4096
run_ok "$TMP/lunlist5.out" ctl --json lun list --target "$T2"
python3 - "$TMP/lunlist5.out" <<'PY' || fail "lun list --json does not describe LUN 5"
import json, sys
l = {l["lun"]: l for l in json.load(open(sys.argv[1]))}[5]
assert l["physical_block_size"] == 4096 and l["size"] == 1048576, l
PY
run_fails "$TMP/prov.out" ctl lun add --target "$T2" --lun 6 --path "$TMP/live6.img" --size 1M \
  --provisioning sometimes
expect_grep 'provisioning "sometimes" is not one of "thin", "full"' "$TMP/prov.out"
run_fails "$TMP/rel.out" ctl call lun.add '{"target":"'"$T2"'","lun":6,"path":"rel.img"}'
expect_grep 'path must be absolute, not "rel.img"' "$TMP/rel.out"
run_ok "$TMP/rm5.out" ctl lun remove --target "$T2" --lun 5 --force

log "lun resize: iscsi-readcapacity16 follows"
URL2="iscsi://127.0.0.1:$PORT/$(iqn_url "$T2")/2"
run_ok "$TMP/cap1.out" iscsi-readcapacity16 "$URL2"
expect_grep "^Total size:8388608$" "$TMP/cap1.out" "capacity before resize"
run_ok "$TMP/resize.out" ctl lun resize --target "$T2" --lun 2 --size 24M
run_ok "$TMP/cap2.out" iscsi-readcapacity16 "$URL2"
expect_grep "^Total size:25165824$" "$TMP/cap2.out" "capacity after resize"
run_fails "$TMP/shrink.out" ctl lun resize --target "$T2" --lun 2 --size 1M
expect_grep "shrinking is not supported" "$TMP/shrink.out"

log "lun remove: refused while a session uses the target, forced it goes"
mkfifo "$TMP/qio.in"
qemu-io -f raw "$URL2" <"$TMP/qio.in" >"$TMP/qio.out" 2>&1 &
QIO=$!
bg_track $QIO
exec 3>"$TMP/qio.in"
echo "write -P 0x5a 0 64k" >&3
for ((i = 0; i < 100; i++)); do
  ctl session list >"$TMP/sessions.out" 2>&1 || true
  grep -q "$T2" "$TMP/sessions.out" && break
  sleep 0.1
done
expect_grep "$T2" "$TMP/sessions.out" "qemu-io's session in session list"
rc=0
ctl lun remove --target "$T2" --lun 2 >"$TMP/rm1.out" 2>&1 || rc=$?
[[ $rc == 1 ]] || fail "lun remove while in use: exit $rc, expected 1 (refused)"
expect_grep "is in use by 1 session" "$TMP/rm1.out"
run_ok "$TMP/rm2.out" ctl lun remove --target "$T2" --lun 2 --force
expect_grep "LUN 2: removed" "$TMP/rm2.out"
echo "read -P 0x5a 0 64k" >&3
echo "quit" >&3
exec 3>&-
for ((i = 0; i < 100; i++)); do kill -0 $QIO 2>/dev/null || break; sleep 0.1; done
kill -0 $QIO 2>/dev/null && fail "qemu-io hung after its LUN was removed"
wait $QIO || true
expect_grep "wrote 65536/65536" "$TMP/qio.out" "the write before the removal"
expect_grep "LOGICAL_UNIT_NOT_SUPPORTED" "$TMP/qio.out" "the read after the forced removal"
run_ok "$TMP/ls2.out" iscsi-ls -s "iscsi://127.0.0.1:$PORT"
expect_no_grep "Lun:2 " "$TMP/ls2.out" "removed LUN still listed"

log "reload of an edited config while qemu-io writes and verifies $T1 LUN 1"
URL1="iscsi://127.0.0.1:$PORT/$(iqn_url "$T1")/1"
(
  for ((n = 1; n <= 40; n++)); do
    p=$((n % 200 + 16))
    qemu-io -f raw -c "write -P $p $(((n % 8) * 1048576)) 1M" \
      -c "read -P $p $(((n % 8) * 1048576)) 1M" "$URL1" >"$TMP/loop.$n.out" 2>&1 || exit 10
    grep -q "read 1048576/1048576" "$TMP/loop.$n.out" || exit 11
    grep -qi "fail\|error\|mismatch" "$TMP/loop.$n.out" && exit 12
  done
  exit 0
) &
LOOP=$!
bg_track $LOOP
sleep 0.5
write_config "
  [[target.lun]]
  number = 3
  path = \"$TMP/live3.img\"
  size = \"2M\""
run_ok "$TMP/reload1.out" ctl reload
expect_grep "LUN 3: added" "$TMP/reload1.out"
expect_no_grep "$T1" "$TMP/reload1.out" "the untouched target must not change"
# The same file again through SIGHUP: nothing to do, still serving.
kill -HUP "$DAEMON_PID"
rc=0
wait $LOOP || rc=$?
[[ $rc == 0 ]] || { cat "$TMP"/loop.*.out >&2; fail "qemu-io loop on the untouched LUN failed (exit $rc)"; }
run_ok "$TMP/ls3.out" iscsi-ls -s "iscsi://127.0.0.1:$PORT"
expect_grep "Lun:3 +Type:DIRECT_ACCESS" "$TMP/ls3.out" "LUN 3 from the reloaded config"
expect_grep "SIGHUP: reloading" "$DAEMON_LOG"

log "broken config: refused whole, the running one stays"
cp "$CONF" "$TMP/good.toml"
printf '[[target]]\nname = "iqn.2025-01.com.example:new"\n[[target.lun]]\nnumber = 0\npath = "%s"\nsize = "1M"\nblock_size = 1000\n' \
  "$TMP/new.img" >>"$CONF"
rc=0
ctl reload >"$TMP/reload2.out" 2>&1 || rc=$?
[[ $rc == 1 ]] || fail "reload of a broken config: exit $rc, expected 1"
expect_grep "ringtgt.toml:[0-9]+:[0-9]+: block_size must be 512 or 4096" "$TMP/reload2.out"
expect_grep "reload refused, the running configuration stays" "$DAEMON_LOG"
kill -HUP "$DAEMON_PID"
sleep 0.3
run_ok "$TMP/ls4.out" iscsi-ls -s "iscsi://127.0.0.1:$PORT"
expect_grep "Lun:3 +Type:DIRECT_ACCESS" "$TMP/ls4.out" "old config still serving"
expect_no_grep "example:new" "$TMP/ls4.out" "target of the refused config"
[[ -e $TMP/new.img ]] && fail "the refused config created its LUN file"

log "config write: the running config back to its file, readable again"
cp "$TMP/good.toml" "$CONF"
run_ok "$TMP/add4.out" ctl lun add --target "$T2" --lun 4 --path "$TMP/live4.img" --size 1M
run_ok "$TMP/write.out" ctl config write
head -1 "$CONF" | grep -q "^# Written by ringtgt" || fail "written config lacks its header comment"
grep -q "live4.img" "$CONF" || fail "written config lacks the live-added LUN 4"
run_ok "$TMP/reload3.out" ctl reload
expect_grep "^no change$" "$TMP/reload3.out" "reload of the written config"

log "acl, portal and session changes"
run_ok "$TMP/acl1.out" ctl acl add --target "$T2" --initiator iqn.2025-01.com.example:only
run_ok "$TMP/disc1.out" iscsi-ls "iscsi://127.0.0.1:$PORT"
expect_no_grep "$T2" "$TMP/disc1.out" "target closed to our initiator by acl add"
expect_grep "$T1" "$TMP/disc1.out"
run_ok "$TMP/acl2.out" ctl acl remove --target "$T2" --initiator iqn.2025-01.com.example:only
run_ok "$TMP/disc2.out" iscsi-ls "iscsi://127.0.0.1:$PORT"
expect_grep "$T2" "$TMP/disc2.out" "target open again after acl remove"
run_fails "$TMP/acl3.out" ctl acl add --target "$T2" --initiator "Not An IQN"
expect_grep "not a valid iSCSI name" "$TMP/acl3.out"
PORT2=$(pick_port)
run_ok "$TMP/portal1.out" ctl portal add "127.0.0.1:$PORT2"
port_listening "$PORT2" || fail "portal add: nothing listens on $PORT2"
run_ok "$TMP/ls5.out" iscsi-ls -s "iscsi://127.0.0.1:$PORT2"
expect_grep "Lun:1 +Type:DIRECT_ACCESS" "$TMP/ls5.out" "a LUN through the added portal"
run_ok "$TMP/portal2.out" ctl portal remove "127.0.0.1:$PORT2"
port_listening "$PORT2" && fail "portal remove: $PORT2 still listens"
mkfifo "$TMP/qio2.in"
qemu-io -f raw "$URL1" <"$TMP/qio2.in" >"$TMP/qio2.out" 2>&1 &
QIO2=$!
bg_track $QIO2
exec 4>"$TMP/qio2.in"
for ((i = 0; i < 100; i++)); do
  ctl session list --target "$T1" >"$TMP/sessions2.out" 2>&1 || true
  grep -q "linux-kvm" "$TMP/sessions2.out" && break
  sleep 0.1
done
expect_grep "linux-kvm" "$TMP/sessions2.out" "qemu-io's session on $T1"
tsih_of() { python3 -c 'import json,sys; print(" ".join(str(s["tsih"]) for s in json.load(open(sys.argv[1])) if "linux-kvm" in s["initiator"]))' "$1"; }
run_ok "$TMP/sj1.out" ctl --json session list --target "$T1"
OLD_TSIH=$(tsih_of "$TMP/sj1.out")
[[ $OLD_TSIH =~ ^[0-9]+$ ]] || fail "no single qemu-io session in session list (got '$OLD_TSIH')"
run_ok "$TMP/close.out" ctl session close --tsih "$OLD_TSIH"
expect_grep "closed session tsih $OLD_TSIH of iqn.2008-11.org.linux-kvm" "$TMP/close.out"
# libiscsi logs in again at once; the closed session (its TSIH) must be gone.
run_ok "$TMP/sj2.out" ctl --json session list --target "$T1"
for t in $(tsih_of "$TMP/sj2.out"); do
  [[ $t != "$OLD_TSIH" ]] || fail "session tsih $OLD_TSIH still listed after session close"
done
expect_grep "closing connection .*closed by the administrator" "$DAEMON_LOG"
run_fails "$TMP/close2.out" ctl session close --tsih 65000
expect_grep "no such session" "$TMP/close2.out"
exec 4>&-
wait $QIO2 || true

log "a peer that is not permitted"
chmod 755 "$TMP" "$TMP/run"
rc=0
setpriv --reuid=nobody --regid=nogroup --clear-groups "$RINGTGTCTL" --socket "$SOCK" version \
  >"$TMP/nobody1.out" 2>&1 || rc=$?
[[ $rc == 4 ]] || fail "nobody on a 0660 socket: exit $rc, expected 4"
chmod 666 "$SOCK" # the file mode lets it in; SO_PEERCRED must still refuse
rc=0
setpriv --reuid=nobody --regid=nogroup --clear-groups "$RINGTGTCTL" --socket "$SOCK" version \
  >"$TMP/nobody2.out" 2>&1 || rc=$?
[[ $rc == 4 ]] || { cat "$TMP/nobody2.out" >&2; fail "nobody past the file mode: exit $rc, expected 4"; }
expect_grep "permission denied: uid 65534" "$TMP/nobody2.out"
expect_grep "admin socket: refused uid 65534" "$DAEMON_LOG"
chmod 660 "$SOCK"

log "malformed and hostile messages"
python3 - "$SOCK" <<'PY' || fail "admin socket answers to bad messages"
import json, socket, sys
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sys.argv[1])
    return s, s.makefile("rb")
s, f = conn()
def ask(line):
    s.sendall(line + b"\n")
    return json.loads(f.readline())
r = ask(b'{"jsonrpc":"2.0","id":1,"method":')
assert r["error"]["code"] == -32700, r
r = ask(b'{"jsonrpc":"2.0","id":2,"method":"no.such"}')
assert r["error"]["code"] == -32601 and r["id"] == 2, r
r = ask(b'{"jsonrpc":"2.0","id":3,"method":"lun.add","params":{"target":"x"}}')
assert r["error"]["code"] == -32602, r
r = ask(b'{"jsonrpc":"2.0","id":4,"method":"lun.resize","params":{"target":"iqn.2025-01.com.example:live","lun":0,"size":"big"}}')
assert r["error"]["code"] == -32602 and "size" in r["error"]["message"], r
r = ask(b'[' * 100000)
assert r["error"]["code"] == -32600, r
r = ask(b'{"jsonrpc":"2.0","id":5,"method":"version"}')   # same connection still works
assert r["result"]["version"], r
# Many idle clients at once do not block another one.
idle = [conn() for _ in range(20)]
for c, _ in idle:
    c.sendall(b'{"jsonrpc":"2.0","id":1,')   # half a request, never finished
r = ask(b'{"jsonrpc":"2.0","id":6,"method":"target.list"}')
assert len(r["result"]) == 2, r
# A line longer than the limit: an error, then the connection is closed.
big, bf = conn()
big.sendall(b'{"x":"' + b"a" * (1 << 20) + b'"')
resp = json.loads(bf.readline())
assert resp["error"]["code"] == -32600 and "longer than" in resp["error"]["message"], resp
for c, _ in idle:
    c.close()
PY
run_ok "$TMP/version2.out" ctl version

log "lun stats: the counters of $T1 LUN 1 follow a known amount of I/O"
stat_of() { # FILE FIELD: that field of $T1 LUN 1 in a lun stats --json answer
  python3 -c 'import json,sys; r=[x for x in json.load(open(sys.argv[1])) if x["lun"]==1]; print(r[0][sys.argv[2]])' "$1" "$2"
}
run_ok "$TMP/stats0.out" ctl --json lun stats --target "$T1"
w0=$(stat_of "$TMP/stats0.out" writes)
b0=$(stat_of "$TMP/stats0.out" write_bytes)
run_ok "$TMP/stats-io.out" qemu-io -f raw -c "write -P 0x5c 0 4k" -c "write -P 0x5d 64k 4k" \
  -c "write -P 0x5e 128k 4k" "iscsi://127.0.0.1:$PORT/$T1/1"
run_ok "$TMP/stats1.out" ctl --json lun stats --target "$T1"
[[ $(stat_of "$TMP/stats1.out" writes) == $((w0 + 3)) ]] ||
  fail "lun stats: writes $(stat_of "$TMP/stats1.out" writes), expected $((w0 + 3))"
[[ $(stat_of "$TMP/stats1.out" write_bytes) == $((b0 + 12288)) ]] ||
  fail "lun stats: write_bytes $(stat_of "$TMP/stats1.out" write_bytes), expected $((b0 + 12288))"
run_ok "$TMP/stats-table.out" ctl lun stats
expect_grep "^TARGET +LUN +READS +WRITES" "$TMP/stats-table.out" "lun stats table header"

rc=0
"$RINGTGTCTL" --socket "$TMP/none.sock" version >"$TMP/nosock.out" 2>&1 || rc=$?
[[ $rc == 3 ]] || fail "no daemon: exit $rc, expected 3"
rc=0
ctl lun frobnicate >"$TMP/usage.out" 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "unknown command: exit $rc, expected 2"

stop_daemon_ok
[[ -e $SOCK ]] && fail "admin socket left behind after a clean stop"
log "done"
