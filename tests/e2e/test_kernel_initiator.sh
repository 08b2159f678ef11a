#!/usr/bin/env bash
# End to end as a Raspberry Pi node uses ringtgt: Linux's own initiator
# (open-iscsi in a Debian 12 guest under qemu) against the daemon on the
# host's loopback. The guest (tests/e2e/guest_init.sh) runs the steps and
# reports each on its serial console; this script serves the config, answers
# the guest's sync points (measure the backing file, resize a LUN, stop and
# restart the daemon) and fails with the console's tail on any failed step.
#
# Environment: RINGTGT_BIN, RINGTGTCTL (from ctest), RINGTGT_E2E_CACHE (guest
# image cache, default /var/cache/ringtgt-e2e when writable).
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/qemu_guest.sh"
: "${RINGTGTCTL:?RINGTGTCTL must name ringtgtctl}"
T_START=$(date +%s)
image=$(e2e_image initiator) || fail "no guest image"
log "guest image $image (ready after $(($(date +%s) - T_START)) s)"

# --- the target: node1's layout (one CHAP target per Pi, mutual CHAP for
# node2, discovery CHAP) plus a shared target whose LUNs are masked per Pi.
port=$(pick_port)
iqn=iqn.2025-01.com.jacobgade
secret() { # secret NAME VALUE: a 0600 secret file
  printf '%s\n' "$2" >"$TMP/secret-$1"
  chmod 600 "$TMP/secret-$1"
}
disc_secret=discovery-secret-$RANDOM$RANDOM
node2_secret=node2-secret-$RANDOM$RANDOM
node1_secret=node1-secret-$RANDOM$RANDOM
node3_secret=node3-secret-$RANDOM$RANDOM
secret discovery "$disc_secret"
secret node2 "$node2_secret"
secret node1-for-node2 "$node1_secret"
secret node3 "$node3_secret"
lun1=$TMP/lun1.img lun2=$TMP/lun2.img shared0=$TMP/shared0.img shared1=$TMP/shared1.img
cat >"$TMP/ringtgt.toml" <<CONF
workers = 2
log_level = "info"
state_dir = "$TMP/state"

[[portal]]
listen = "127.0.0.1:$port"

[admin]
socket = "$TMP/admin.sock"

[discovery]
chap_user = "discovery"
chap_secret_file = "$TMP/secret-discovery"

[[target]]
name = "$iqn:node1.lun1"
allowed_initiators = ["$iqn:node2"]
chap_user = "node2"
chap_secret_file = "$TMP/secret-node2"
mutual_user = "node1"
mutual_secret_file = "$TMP/secret-node1-for-node2"

  [[target.lun]]
  number = 0
  path = "$lun1"
  size = "256M"
  physical_block_size = 4096
  write_ack = "writethrough"
  provisioning = "thin"

[[target]]
name = "$iqn:node1.lun2"
allowed_initiators = ["$iqn:node3"]
chap_user = "node3"
chap_secret_file = "$TMP/secret-node3"

  [[target.lun]]
  number = 0
  path = "$lun2"
  size = "128M"
  write_ack = "writeback"

[[target]]
name = "$iqn:node1.shared"

  [[target.lun]]
  number = 0
  path = "$shared0"
  size = "256M"
  allowed_initiators = ["$iqn:node2"]

  [[target.lun]]
  number = 1
  path = "$shared1"
  size = "64M"
  allowed_initiators = ["$iqn:node3"]
CONF
start_daemon "$TMP/ringtgt.toml" "$port"

# --- the guest: the cached root plus this run's /init and parameters.
mkdir -p "$TMP/run/e2e/bench"
cp "$e2e_dir/guest_init.sh" "$TMP/run/init"
chmod 755 "$TMP/run/init"
cp "$e2e_dir/guest_checks.sh" "$e2e_dir/guest_iscsi.sh" "$TMP/run/e2e/"
cp "$RINGTGT_SRC"/bench/fio/*.fio "$TMP/run/e2e/bench/"
cat >"$TMP/run/e2e/params" <<PARAMS
PORT=$port
T_LUN1=$iqn:node1.lun1
T_LUN2=$iqn:node1.lun2
T_SHARED=$iqn:node1.shared
INIT_NODE2=$iqn:node2
INIT_NODE3=$iqn:node3
DISC_USER=discovery
DISC_SECRET=$disc_secret
NODE2_SECRET=$node2_secret
NODE1_SECRET=$node1_secret
NODE3_SECRET=$node3_secret
LUN1_BYTES=$((256 << 20))
LUN2_BYTES=$((128 << 20))
SHARED_GROWN_BYTES=$((320 << 20))
REPLACEMENT_TIMEOUT=60
RESTART_FIO_SECONDS=12
BENCH_SECONDS=3
PARAMS
e2e_initrd "$image" "$TMP/run" "$TMP/initrd"

# The guest reaches the host's loopback as 10.0.2.2 (user networking); its
# second serial port is the host's answer channel (a pipe: ctl.in / ctl.out).
mkfifo "$TMP/ctl.in" "$TMP/ctl.out"
boot_guest "$image" "$TMP/initrd" 1024 quiet \
  -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
  -chardev "pipe,id=ctl,path=$TMP/ctl" -device isa-serial,chardev=ctl
# Drain what the guest writes to its control port, so the pipe never fills.
cat "$TMP/ctl.out" >/dev/null &
bg_track $!

reply() { printf '%s\n' "$1" >"$TMP/ctl.in"; }
blocks() { stat -c %b "$1"; }

# --- the guest's sync points, in the order guest_init.sh reaches them --------
wait_report '^E2E-SYNC 1 fstrim-before'
before=$(blocks "$lun1")
reply go
wait_report '^E2E-SYNC 2 fstrim-after'
after=$(blocks "$lun1")
log "lun1 allocated 512-byte blocks: $before before fstrim, $after after"
# The guest deleted 32 MiB of fio files: at least 16 MiB must be given back.
if ((after < before - 32768)); then reply ok; else
  reply "not-shrunk"
  HOST_FAILURES+=("fstrim did not shrink $lun1: $before -> $after blocks")
fi

wait_report '^E2E-SYNC 3 resize-shared'
if "$RINGTGTCTL" --socket "$TMP/admin.sock" lun resize --target "$iqn:node1.shared" --lun 0 --size 320M \
  >"$TMP/resize.out" 2>&1; then reply ok; else
  reply failed
  HOST_FAILURES+=("ringtgtctl lun resize failed: $(cat "$TMP/resize.out")")
fi

wait_report '^E2E-SYNC 4 restart-sigterm'
stop_daemon 10
[[ $DAEMON_RC == 0 ]] || HOST_FAILURES+=("daemon exited $DAEMON_RC after SIGTERM under fio")
start_daemon "$TMP/ringtgt.toml" "$port"
reply ok

wait_report '^E2E-SYNC 5 restart-sigkill'
kill9_daemon
start_daemon "$TMP/ringtgt.toml" "$port"
reply ok

# lun_write_ack TARGET: the policy the daemon applies to LUN 0 right now.
lun_write_ack() {
  "$RINGTGTCTL" --socket "$TMP/admin.sock" --json lun list --target "$1" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("result",d) if isinstance(d,dict) else d; print([x for x in d if x["lun"]==0][0]["write_ack"])'
}
# answer_policy: replies LUN1's policy, or fails the run if it is unknown.
answer_policy() {
  local p
  p=$(lun_write_ack "$iqn:node1.lun1") || p=""
  [[ $p == writethrough || $p == writeback ]] || HOST_FAILURES+=("ringtgtctl lun list: no write_ack for LUN1 ($p)")
  reply "${p:-unknown}"
}
wait_report '^E2E-SYNC 6 weaken-lun1-to-writeback'
sed -i 's/write_ack = "writethrough"/write_ack = "writeback"/' "$TMP/ringtgt.toml"
"$RINGTGTCTL" --socket "$TMP/admin.sock" reload >"$TMP/reload.out" 2>&1 || true
log "reload with LUN1 writeback under a session: $(tr '\n' ' ' <"$TMP/reload.out")"
answer_policy
wait_report '^E2E-SYNC 7 lun1-policy-after-relogin'
answer_policy

# The steps that must have passed: a guest that skipped one fails too.
required=(discovery-lists-node2-targets discovery-lists-node3-targets chap-wrong-secret-refused
  mutual-chap-wrong-target-secret-refused login-mutual-chap masking-node2-sees-lun0-only
  masking-node3-sees-lun1-only lun1-cache-writethrough lun2-cache-writeback lun1-fua
  lun1-physical-block lun1-discard-granularity fio-verify-on-ext4-files fstrim fsck-clean
  fio-raw-randrw-verify verify-after-relogin resize-seen-after-rescan fio-verify-across-sigterm
  fio-verify-across-sigkill no-io-error-across-sigkill kernel-not-weaker-than-target-after-reload
  cache-type-after-relogin-matches-target login-with-crc32c-digests
  fio-verify-with-digests)
for job in "$RINGTGT_SRC"/bench/fio/*.fio; do required+=("bench-$(basename "$job" .fio)"); done
wait_report '^E2E: [0-9]+ passed, [0-9]+ failed'
grep -E '^(E2E|restart-|  [a-z0-9-]+ (read|write))' "$GUEST_CONSOLE" | grep -v '^E2E-SYNC' || true
for f in "${HOST_FAILURES[@]}"; do echo "HOST-FAIL $f" >&2; done
guest_verdict "${required[@]}"
stop_daemon_ok
