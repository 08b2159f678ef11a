#!/usr/bin/env bash
# Many sessions at once: 8 qemu-io processes, each its own session, write and
# verify their own region of one LUN concurrently; afterwards every region is
# checked again through a fresh session and in the backing file.
# Session reinstatement (same ISID + initiator name logging in again) cannot be
# triggered with libiscsi's tools or QEMU, so it is not tested here.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

command -v qemu-io >/dev/null || fail "qemu-io is missing (apt install qemu-utils qemu-block-extra)"

PORT=$(pick_port)
TGT=iqn.2025-01.com.example:sessions
IMG=$TMP/shared.img
N=8
REGION=$((8 * 1048576))
{ config_prologue "$PORT" "$TGT"; cat <<EOF; } >"$TMP/ringtgt.toml"

  [[target.lun]]
  number = 0
  path = "$IMG"
  size = "64M"
EOF
start_daemon "$TMP/ringtgt.toml" "$PORT"
URL=iscsi://127.0.0.1:$PORT/$TGT/0

# Session i owns [i*8 MiB, (i+1)*8 MiB): pattern 0x10+i, written in pieces of
# varied size (4K, 60K, 1M, 3M, rest), then read back in other pieces.
pids=()
for ((i = 0; i < N; i++)); do
  base=$((i * REGION))
  pat=$((0x10 + i))
  c=(
    -c "write -P $pat $base 4096"
    -c "write -P $pat $((base + 4096)) 61440"
    -c "write -P $pat $((base + 65536)) 1048576"
    -c "write -P $pat $((base + 1114112)) 3145728"
    -c "write -P $pat $((base + 4259840)) $((REGION - 4259840))"
    -c "read -P $pat $base $((REGION / 2))"
    -c "read -P $pat $((base + REGION / 2)) $((REGION / 2))"
  )
  for ((r = 0; r < 3; r++)); do
    c+=(-c "write -P $((pat + 0x40)) $((base + r * 2097152)) 512" -c "read -P $((pat + 0x40)) $((base + r * 2097152)) 512"
      -c "write -P $pat $((base + r * 2097152)) 512")
  done
  c+=(-c "read -P $pat $base $REGION")
  qemu-io -f raw "${c[@]}" "$URL" >"$TMP/s$i.txt" 2>&1 &
  pids+=($!)
  bg_track "${pids[-1]}"
done

failed=0
for ((i = 0; i < N; i++)); do
  rc=0
  wait "${pids[i]}" || rc=$?
  if ((rc != 0)) || grep -Eq 'Pattern verification failed|error|failed' "$TMP/s$i.txt"; then
    echo "----- session $i (exit $rc) -----" >&2
    tail -n 20 "$TMP/s$i.txt" >&2
    failed=$((failed + 1))
  fi
  expect_eq "$(grep -c '^wrote ' "$TMP/s$i.txt")" 11 "session $i: completed writes"
  expect_eq "$(grep -c '^read ' "$TMP/s$i.txt")" 6 "session $i: completed reads"
done
((failed == 0)) || fail "$failed of $N concurrent sessions failed, expected all to succeed"
logins=$(grep -c "login: initiator .* target $TGT .*session normal" "$DAEMON_LOG" || true)
((logins >= N)) || fail "expected at least $N normal logins in the daemon log, found $logins"

log "all $N sessions verified; re-reading every region in one session"
c=()
for ((i = 0; i < N; i++)); do c+=(-c "read -P $((0x10 + i)) $((i * REGION)) $REGION"); done
run_ok "$TMP/all.txt" qemu-io -f raw "${c[@]}" "$URL"
expect_no_grep 'Pattern verification failed' "$TMP/all.txt" "every region holds its session's pattern"
expect_eq "$(grep -c '^read ' "$TMP/all.txt")" "$N" "completed region reads"
stop_daemon_ok

log "backing file"
for ((i = 0; i < N; i++)); do
  want=$(head -c "$REGION" /dev/zero | tr '\0' "\\$(printf '%03o' $((0x10 + i)))" | sha256sum | cut -d' ' -f1)
  got=$(dd if="$IMG" bs=1M skip=$((i * 8)) count=8 status=none | sha256sum | cut -d' ' -f1)
  expect_eq "$got" "$want" "sha256 of region $i in $IMG (every byte $((0x10 + i)))"
done
