#!/usr/bin/env bash
# ringtgt-bench smoke test: a short verified random read/write run over two
# sessions must finish with IOPS > 0, no errors and no verify failures, and a
# re-read of the whole range against the saved generation table must pass.
# Then the verifier must be able to fail: a block corrupted in the backing
# file, and acknowledged writes rolled back to an older image, must both be
# reported as verify failures with a non-zero exit.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

# The bench is built beside the daemon (build/bench/ringtgt-bench).
: "${RINGTGT_BENCH:=$(dirname "$RINGTGT_BIN")/bench/ringtgt-bench}"
[[ -x $RINGTGT_BENCH ]] || fail "RINGTGT_BENCH=$RINGTGT_BENCH is not executable"

PORT=$(pick_port)
TGT=iqn.2025-01.com.example:bench
IMG=$TMP/bench.img
RANGE=8M
{ config_prologue "$PORT" "$TGT"; cat <<EOF; } >"$TMP/ringtgt.toml"

  [[target.lun]]
  number = 0
  path = "$IMG"
  size = "64M"
  block_size = 512
  write_ack = "writethrough"
EOF
URL="iscsi://127.0.0.1:$PORT/$(iqn_url "$TGT")/0"

# bench OUT_PREFIX ARGS...: runs the bench with JSON on OUT_PREFIX.json and the
# table/diagnostics on OUT_PREFIX.err; prints the exit status.
bench() {
  local out=$1 rc=0
  shift
  timeout 60 "$RINGTGT_BENCH" --url "$URL" --json "$@" >"$out.json" 2>"$out.err" || rc=$?
  echo "$rc"
}

# json_get FILE EXPR: evaluates a Python expression over the parsed JSON `j`.
json_get() {
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

show() {
  echo "----- $1.err -----" >&2
  cat "$1.err" >&2
  echo "----- $1.json -----" >&2
  cat "$1.json" >&2
}

# Usage errors exit 2 without touching the network.
rc=0
"$RINGTGT_BENCH" --url "$URL" --rw sideways >/dev/null 2>&1 || rc=$?
expect_eq "$rc" 2 "exit status of a usage error"

start_daemon "$TMP/ringtgt.toml" "$PORT"

# 1. Verified mixed load: 2 sessions x QD 8, 4 KiB, ~3 s, over an 8 MiB span so
#    that reads often hit blocks written earlier in the run.
R=$TMP/run1
rc=$(bench "$R" --verify --rw randrw --sessions 2 --qd 8 --bs 4096 --runtime 3 --range "$RANGE" \
  --save-state "$TMP/state1.bin")
[[ $rc == 0 ]] || { show "$R"; fail "verified randrw run exited $rc, expected 0"; }
python3 -m json.tool "$R.json" >/dev/null || { show "$R"; fail "the --json output does not parse"; }
cat "$R.err"
iops=$(json_get "$R.json" 'j["iops"]')
errors=$(json_get "$R.json" 'j["errors"]')
vfail=$(json_get "$R.json" 'j["verify_failures"]')
checked=$(json_get "$R.json" 'j["verify"]["blocks_checked"]')
writes=$(json_get "$R.json" 'j["write"]["ios"]')
reads=$(json_get "$R.json" 'j["read"]["ios"]')
p99=$(json_get "$R.json" 'j["total"]["lat_us"]["p99"]')
log "run 1: $iops IOPS ($reads reads, $writes writes), p99 ${p99} us, $checked blocks checked"
python3 -c "import sys; sys.exit(0 if float('$iops') > 0 else 1)" || fail "IOPS is $iops, expected > 0"
expect_eq "$errors" 0 "errors in the verified run"
expect_eq "$vfail" 0 "verify failures in the verified run"
((reads > 0 && writes > 0)) || fail "randrw did $reads reads and $writes writes, expected both"
((checked > 0)) || fail "no block was verified"
python3 -c "import sys; sys.exit(0 if float('$p99') > 0 else 1)" || fail "p99 latency is $p99"

# 2. Every block of the span re-read against the saved generation table.
R=$TMP/reread
rc=$(bench "$R" --verify-only --range "$RANGE" --bs 64k --load-state "$TMP/state1.bin")
[[ $rc == 0 ]] || { show "$R"; fail "verify-only re-read exited $rc, expected 0"; }
expect_eq "$(json_get "$R.json" 'j["verify"]["blocks_checked"]')" 16384 "blocks re-read"
expect_eq "$(json_get "$R.json" 'j["verify_failures"]')" 0 "verify failures on re-read"

# 3. Negative: corrupt one written block in the backing file while the daemon
#    is down; the verifier must report it.
stop_daemon_ok
cp --sparse=always "$IMG" "$TMP/snapshot.img"
lba=$(python3 - "$IMG" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    data = f.read(8 << 20)
    for lba in range(len(data) // 512):
        if data[lba * 512 : lba * 512 + 8] == b"RTGTBNC1":
            f.seek(lba * 512 + 300)
            b = data[lba * 512 + 300]
            f.write(bytes([b ^ 0xFF]))
            print(lba)
            break
EOF
)
[[ -n $lba ]] || fail "no written block found in the backing file"
log "corrupted one byte of LBA $lba in $IMG"
start_daemon "$TMP/ringtgt.toml" "$PORT"
R=$TMP/corrupt
rc=$(bench "$R" --verify-only --range "$RANGE" --load-state "$TMP/state1.bin")
[[ $rc == 1 ]] || { show "$R"; fail "verify-only over a corrupted block exited $rc, expected 1"; }
expect_eq "$(json_get "$R.json" 'j["verify_failures"]')" 1 "verify failures with one corrupt block"
expect_eq "$(json_get "$R.json" 'j["errors"]')" 0 "I/O errors with one corrupt block"
expect_grep "VERIFY FAILED at LBA $lba: checksum mismatch" "$R.err" "the corrupt block named"

# 4. Negative: acknowledged writes rolled back. More verified writes on top of
#    state 1, then the image from before them is put back: every block those
#    writes acknowledged must be reported as a lost write.
R=$TMP/run2
rc=$(bench "$R" --verify --rw randwrite --qd 8 --bs 4096 --ios 1000 --range "$RANGE" \
  --load-state "$TMP/state1.bin" --save-state "$TMP/state2.bin")
[[ $rc == 0 ]] || { show "$R"; fail "second write run exited $rc, expected 0"; }
stop_daemon_ok
dd if="$TMP/snapshot.img" of="$IMG" bs=1M count=8 conv=notrunc status=none
start_daemon "$TMP/ringtgt.toml" "$PORT"
R=$TMP/rollback
rc=$(bench "$R" --verify-only --range "$RANGE" --load-state "$TMP/state2.bin")
[[ $rc == 1 ]] || { show "$R"; fail "verify-only after a rollback exited $rc, expected 1"; }
lost=$(json_get "$R.json" 'j["verify_failures"]')
log "rollback: $lost blocks reported"
((lost > 100)) || { show "$R"; fail "only $lost verify failures after rolling back 1000 writes"; }
expect_grep "acknowledged write [0-9]+ is lost" "$R.err" "a lost write named"

stop_daemon_ok
