# Host side of the end-to-end tests (sourced after tests/integration/lib.sh):
# the cached guest image, the per-run initramfs, qemu under TCG, and the
# guest's report lines (guest_checks.sh) read back and judged.
e2e_dir=$RINGTGT_SRC/tests/e2e
GUEST_PID=""
GUEST_CONSOLE=$TMP/console.log # ttyS0: the kernel's (and systemd's) console
GUEST_REPORTS=$GUEST_CONSOLE   # where the E2E lines come; a test may move them
HOST_FAILURES=()

command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 is missing (scripts/deps.sh installs it)"

# e2e_image FLAVOR [PACKAGE...]: prints the image folder (build_guest.sh),
# building it first when the cache has none for these inputs.
e2e_image() {
  local cache=${RINGTGT_E2E_CACHE:-/var/cache/ringtgt-e2e}
  mkdir -p "$cache" 2>/dev/null && [[ -w $cache ]] || cache=${XDG_CACHE_HOME:-$HOME/.cache}/ringtgt-e2e
  "$e2e_dir/build_guest.sh" "$cache" "$@" || fail "could not build the $1 guest image"
}

# e2e_initrd IMAGE OVERLAY OUT: the cached root followed by OVERLAY's files as
# a second cpio archive (the kernel unpacks both, the second over the first).
e2e_initrd() {
  (cd "$2" && find . -print0 | cpio --null -o -H newc --quiet) >"$TMP/overlay.cpio"
  cat "$1/rootfs.cpio" "$TMP/overlay.cpio" >"$3"
}

# boot_guest IMAGE INITRD MEM_MB APPEND [QEMU ARGS...]: starts qemu in the
# background (GUEST_PID), console on ttyS0 into GUEST_CONSOLE. The guest
# has what QEMU ARGS give it (NIC, disks, more serial ports) and no more.
boot_guest() {
  local image=$1 initrd=$2 mem=$3 append=$4
  shift 4
  : >"$GUEST_CONSOLE"
  [[ $GUEST_REPORTS == "$GUEST_CONSOLE" ]] || : >"$GUEST_REPORTS"
  qemu-system-x86_64 -M pc -accel tcg,thread=multi -cpu max -smp 2 -m "$mem" \
    -display none -monitor none -no-reboot \
    -kernel "$image/vmlinux" -initrd "$initrd" -append "console=ttyS0 panic=-1 $append" \
    -serial "file:$GUEST_CONSOLE" "$@" >"$TMP/qemu.log" 2>&1 &
  GUEST_PID=$!
  bg_track "$GUEST_PID"
  GUEST_DEADLINE=$(($(date +%s) + ${RINGTGT_E2E_GUEST_SECONDS:-420}))
}

guest_fail() {
  echo "----- qemu -----" >&2
  cat "$TMP/qemu.log" >&2
  echo "----- guest: steps -----" >&2
  grep -E '^E2E' "$GUEST_REPORTS" >&2
  if [[ $GUEST_REPORTS != "$GUEST_CONSOLE" ]]; then
    echo "----- guest: report tail -----" >&2
    tail -n 40 "$GUEST_REPORTS" >&2
  fi
  echo "----- guest console: tail -----" >&2
  tail -n 40 "$GUEST_CONSOLE" >&2
  fail "$*"
}

# wait_report REGEX: until the guest reported a matching line; fails when the
# guest ends or the deadline passes first.
wait_report() {
  local ended
  while :; do
    ended=0
    grep -q '^E2E: ' "$GUEST_REPORTS" && ended=1
    kill -0 "$GUEST_PID" 2>/dev/null || ended=1
    # Looked for after the end checks: a line written in between still counts.
    grep -Eq -- "$1" "$GUEST_REPORTS" && return 0
    ((ended)) && guest_fail "guest ended before /$1/"
    (($(date +%s) < GUEST_DEADLINE)) || guest_fail "guest did not reach /$1/ in time"
    sleep 0.2
  done
}

# guest_verdict REQUIRED_STEP...: after the guest's last line, fails the test
# unless it reported 0 failed, passed every REQUIRED_STEP (a guest that
# skipped one fails too) and the host added nothing to HOST_FAILURES.
guest_verdict() {
  local summary name f i
  wait_report '^E2E: [0-9]+ passed, [0-9]+ failed'
  for ((i = 0; i < 100; i++)); do kill -0 "$GUEST_PID" 2>/dev/null || break; sleep 0.1; done
  summary=$(grep -E '^E2E: ' "$GUEST_REPORTS" | tr -d '\r')
  for name in "$@"; do
    grep -q "^E2E-PASS $name \[" "$GUEST_REPORTS" || HOST_FAILURES+=("step $name did not pass")
  done
  log "$summary; whole test $(($(date +%s) - T_START)) s"
  if [[ $summary != *" 0 failed" ]] || ((${#HOST_FAILURES[@]})); then
    for f in "${HOST_FAILURES[@]}"; do echo "FAIL: $f" >&2; done
    guest_fail "end-to-end steps failed ($summary)"
  fi
}
