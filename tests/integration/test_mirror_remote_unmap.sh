#!/usr/bin/env bash
# UNMAP and WRITE SAME on a mirrored LUN with a remote copy (issue 11:
# "UNMAP/WRITE SAME go to every copy"; docs/replication.md, "Remote
# copies"). Daemon A mirrors two thin LUNs, each to a LUN of daemon B:
# - LUN 0's copy is a thin LUN of B (LBPRZ): a discard through A deallocates
#   the range on A's primary and, as UNMAP, on B's file too;
# - LUN 1's copy is a fully provisioned LUN of B: the same discard reaches it
#   as WRITE SAME of zeroes (B's file stays allocated);
# - on both, qemu-io's write -z (WRITE SAME) zeroes the range on both copies;
# - the copies stay in sync, compare equal byte for byte, and read zeroes
#   where the discard went and the pattern elsewhere.
# qemu-io is the initiator: its iscsi driver sends UNMAP only to a LUN that
# reports it (VPD B2h LBPU), so a LUN reported fully provisioned fails here.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

: "${RINGTGTCTL:?RINGTGTCTL must name the ringtgtctl binary}"
command -v qemu-io >/dev/null || fail "qemu-io is missing (scripts/deps.sh installs it)"

TGT=iqn.2025-01.com.example:mirror-a
TGT_B=iqn.2025-01.com.example:replica-b
PORT=$(pick_port)
PORT_B=$(pick_port)

{
  config_prologue "$PORT" "$TGT"
  for n in 0 1; do
    cat <<EOF

  [[target.lun]]
  number = $n
  path = "$TMP/primary$n.img"
  size = "16M"
  block_size = 512
    [[target.lun.copy]]
    name = "remote"
    url = "iscsi://127.0.0.1:$PORT_B/$TGT_B/$n"
    failure_domain = "host:b"
    connect_wait = 10
EOF
  done
} >"$TMP/a.toml"

{
  b_config_prologue
  cat <<EOF

  [[target.lun]]
  number = 0
  path = "$TMP/replica0.img"
  size = "16M"
  block_size = 512

  [[target.lun]]
  number = 1
  path = "$TMP/replica1.img"
  size = "16M"
  block_size = 512
  provisioning = "full"
EOF
} >"$TMP/b.toml"

# allocated FILE FROM LEN: how many bytes of FILE's [FROM, FROM + LEN) hold data.
allocated() {
  python3 - "$@" <<'PY'
import os, sys
path, start, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDONLY)
end, pos, total = start + length, start, 0
while pos < end:
    try:
        data = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        break
    if data >= end:
        break
    hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
    total += hole - data
    pos = hole
print(total)
PY
}

start_b
start_daemon "$TMP/a.toml" "$PORT"
label() { printf 'copy remote of target %s LUN %s' "$TGT" "$1"; }
expect_grep "$(label 0): connected to .*; unmaps go as UNMAP\)" "$DAEMON_LOG" \
  "A's line for the copy on B's thin LUN"
expect_grep "$(label 1): connected to .*; unmaps go as WRITE SAME of zeroes\)" "$DAEMON_LOG" \
  "A's line for the copy on B's fully provisioned LUN"
# both_in_sync: copy list shows the four copies (two LUNs, primary and remote), all in sync.
both_in_sync() {
  "$RINGTGTCTL" --socket "$TMP/admin.sock" --json copy list --target "$TGT" >"$TMP/copies.json" ||
    fail "copy list failed"
  python3 - "$TMP/copies.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
sys.exit(0 if len(rows) == 4 and all(r["state"] == "in_sync" for r in rows) else 1)
PY
}
for ((i = 0; i < 300; i++)); do
  both_in_sync && break
  sleep 0.1
done
both_in_sync || fail "the copies are not both in sync: $(cat "$TMP/copies.json")"

run_ok "$TMP/copy-list.out" "$RINGTGTCTL" --socket "$TMP/admin.sock" copy list
expect_line "$TMP/copy-list.out" "$(label 1): iscsi://127.0.0.1:$PORT_B/$TGT_B/1 (at most \
33554432 bytes a command, unmaps as WRITE SAME of zeroes)"
python3 - "$TMP/copies.json" "iscsi://127.0.0.1:$PORT_B/$TGT_B/0" <<'PY' || fail "copy.list's remote"
import json, sys
rows = {(r["lun"], r["copy"]): r["remote"] for r in json.load(open(sys.argv[1]))}
assert rows[(0, "primary")] is None, rows
assert rows[(0, "remote")] == {"url": sys.argv[2], "connected": True,
                               "max_transfer_bytes": 33554432, "unmaps_as": "UNMAP"}, rows
PY

M=$((1 << 20))
for n in 0 1; do
  URL="iscsi://127.0.0.1:$PORT/$TGT/$n"
  P=$TMP/primary$n.img
  R=$TMP/replica$n.img
  log "LUN $n: 4 MiB of a pattern, then a discard of [1M, 3M) and write -z of [3M, 4M)"
  qemu_ok "$TMP/fill$n.out" "$URL" "write -P 0xab 0 4M"
  same_bytes "$P" "$R" "LUN $n after the pattern"
  expect_eq "$(allocated "$R" $M $((2 * M)))" $((2 * M)) "B's LUN $n bytes allocated before the discard"
  qemu_ok "$TMP/discard$n.out" "$URL" "discard 1M 2M" "write -z 3M 1M" \
    "read -P 0 1M 3M" "read -P 0xab 0 1M"
  expect_grep "^discard 2097152/2097152 bytes" "$TMP/discard$n.out" "qemu-io's discard on LUN $n"
  expect_eq "$(allocated "$P" $M $((2 * M)))" 0 "A's primary bytes allocated in the discarded range"
  same_bytes "$P" "$R" "LUN $n after the discard and write -z"
  qemu_ok "$TMP/reread$n.out" "iscsi://127.0.0.1:$PORT_B/$TGT_B/$n" "read -P 0 1M 3M" \
    "read -P 0xab 0 1M"
done
expect_eq "$(allocated "$TMP/replica0.img" $M $((2 * M)))" 0 \
  "B's thin LUN bytes allocated in the discarded range (UNMAP reached it)"
expect_eq "$(allocated "$TMP/replica1.img" $M $((2 * M)))" $((2 * M)) \
  "B's fully provisioned LUN bytes allocated in the discarded range (zeroes written)"
both_in_sync || fail "a copy left the in-sync set: $(cat "$TMP/copies.json")"
expect_no_grep "out of sync" "$DAEMON_LOG" "A's log"
stop_daemon_ok
log "PASS"
