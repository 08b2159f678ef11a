#!/bin/bash
# PID 1 of the end-to-end guest (the initramfs's /init): what a Raspberry Pi
# node does with ringtgt, step by step, with open-iscsi and fio. Every check
# prints "E2E-PASS name" or "E2E-FAIL name: why" on the console (ttyS0); the
# last line is "E2E: N passed, M failed", then the guest powers off.
#
# Where the host must act (measure the backing file, resize a LUN, kill the
# daemon) the guest prints "E2E-SYNC <n> <name>" and blocks until the host
# answers one line on the second serial port (ttyS1).
#
# Parameters come from /e2e/params (written by the host per run).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /run /tmp /mnt /run/lock/iscsi /var/lock
mount -t tmpfs tmpfs /run
mkdir -p /run/lock/iscsi
. /e2e/params

sync_no=0
. /e2e/guest_checks.sh
. /e2e/guest_iscsi.sh
fatal_context() { [[ -f /tmp/iscsid.log ]] && tail -n 20 /tmp/iscsid.log | sed 's/^/  iscsid | /'; }

# host_sync NAME: lets the host act; returns its one-line answer in REPLY.
host_sync() {
  sync_no=$((sync_no + 1))
  echo "E2E-SYNC $sync_no $1"
  REPLY=""
  read -r -t 300 REPLY <&3 || fatal "sync-$1" "no answer from the host"
  REPLY=${REPLY%$'\r'}
}

# --- devices and network ----------------------------------------------------
for m in virtio_pci virtio_net iscsi_tcp sd_mod ext4 crc32c_generic nft_chain_nat nft_nat nft_masq; do
  modprobe "$m" || fatal "modprobe-$m" "cannot load module $m"
done
modprobe crc32c-intel 2>/dev/null || true
stty -F /dev/ttyS1 raw -echo
exec 3</dev/ttyS1

ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
# SendTargets answers with the portal's own address, 127.0.0.1:PORT; the
# host's loopback is 10.0.2.2 from here. Send that address there, so the
# initiator uses exactly what discovery returned.
echo 1 >/proc/sys/net/ipv4/conf/all/route_localnet
nft -f - <<EOF || fatal redirect "nft rules refused"
table ip e2e {
  chain out { type nat hook output priority -100; ip daddr 127.0.0.1 tcp dport $PORT dnat to 10.0.2.2:$PORT; }
  chain post { type nat hook postrouting priority 100; ip daddr 10.0.2.2 masquerade; }
}
EOF
PORTAL=127.0.0.1:$PORT

# --- open-iscsi, configured as docs/homelab.md tells a Pi owner -------------
echo "InitiatorName=$INIT_NODE2" >/etc/iscsi/initiatorname.iscsi
iscsid_conf node.startup automatic
iscsid_conf node.session.timeo.replacement_timeout "$REPLACEMENT_TIMEOUT"
iscsid_conf node.conn[0].timeo.noop_out_interval 5
iscsid_conf node.conn[0].timeo.noop_out_timeout 10
iscsid_conf discovery.sendtargets.auth.authmethod CHAP
iscsid_conf discovery.sendtargets.auth.username "$DISC_USER"
iscsid_conf discovery.sendtargets.auth.password "$DISC_SECRET"
iscsid -f >/tmp/iscsid.log 2>&1 &
wait_iscsid || fatal iscsid "iscsiadm cannot reach iscsid"

# An interface record per Pi: node3's name for the masking checks.
iscsiadm -m iface -I node3 -o new >/dev/null
iscsiadm -m iface -I node3 -o update -n iface.initiatorname -v "$INIT_NODE3" >/dev/null

# --- 1. discovery, CHAP, masking, what the kernel sees -----------------------
check discovery-node2 iscsiadm -m discovery -t sendtargets -p "$PORTAL" -I default || fatal discovery "see above"
cp /tmp/out /tmp/disc2
grep -q "^$PORTAL,[0-9]* $T_LUN1\$" /tmp/disc2 && grep -q " $T_SHARED\$" /tmp/disc2 &&
  ! grep -q " $T_LUN2\$" /tmp/disc2 && pass discovery-lists-node2-targets ||
  failc discovery-lists-node2-targets "$(tr '\n' ';' </tmp/disc2)"
# -o new: add node3's records and keep node2's (a plain discovery through
# another interface would drop the records it did not return).
check discovery-node3 iscsiadm -m discovery -t sendtargets -p "$PORTAL" -I node3 -o new
grep -q " $T_LUN2\$" /tmp/out && ! grep -q " $T_LUN1\$" /tmp/out && pass discovery-lists-node3-targets ||
  failc discovery-lists-node3-targets "$(tr '\n' ';' </tmp/out)"

chap "$T_LUN1" default node2 "wrong-secret-$NODE2_SECRET" node1 "$NODE1_SECRET"
check_fails chap-wrong-secret-refused 24 login "$T_LUN1" default
# The initiator refuses a target that cannot prove the mutual secret: a
# non-retryable login failure (19), where a wrong initiator secret is the
# target's authentication failure (24).
chap "$T_LUN1" default node2 "$NODE2_SECRET" node1 "wrong-$NODE1_SECRET"
check_fails mutual-chap-wrong-target-secret-refused 19 login "$T_LUN1" default
chap "$T_LUN1" default node2 "$NODE2_SECRET" node1 "$NODE1_SECRET"
check login-mutual-chap login "$T_LUN1" default || fatal login "cannot continue"
chap "$T_LUN2" node3 node3 "$NODE3_SECRET"
check login-chap-node3 login "$T_LUN2" node3 || fatal login "cannot continue"
check login-shared-node2 login "$T_SHARED" default
check login-shared-node3 login "$T_SHARED" node3

d1=$(session_disk "$T_LUN1" "$INIT_NODE2" 0) || fatal disk-lun1 "no disk attached"
d2=$(session_disk "$T_LUN2" "$INIT_NODE3" 0) || fatal disk-lun2 "no disk attached"
ds=$(session_disk "$T_SHARED" "$INIT_NODE2" 0) || fatal disk-shared "no disk attached"
session_disk "$T_SHARED" "$INIT_NODE3" 1 >/dev/null || failc masking-node3-disk "LUN 1 not attached"
echo "disks: lun1=$d1 lun2=$d2 shared(node2)=$ds"
expect_eq masking-node2-sees-lun0-only "$(session_luns "$T_SHARED" "$INIT_NODE2")" "0 "
expect_eq masking-node3-sees-lun1-only "$(session_luns "$T_SHARED" "$INIT_NODE3")" "1 "

expect_eq lun1-size "$(disk_bytes "$d1")" "$LUN1_BYTES"
expect_eq lun1-vendor "$(sysf "$d1" device/vendor)" RINGTGT
expect_eq lun1-model "$(sysf "$d1" device/model)" "ringtgt disk"
expect_eq lun1-cache-writethrough "$(cache_type "$d1")" "write through"
expect_eq lun1-fua "$(fua "$d1")" 1
expect_eq lun1-logical-block "$(sysf "$d1" queue/logical_block_size)" 512
expect_eq lun1-physical-block "$(sysf "$d1" queue/physical_block_size)" 4096
expect_eq lun1-discard-granularity "$(sysf "$d1" queue/discard_granularity)" 4096
(($(sysf "$d1" queue/discard_max_bytes) > 0)) && pass lun1-discard-enabled ||
  failc lun1-discard-enabled "discard_max_bytes is 0"
expect_eq lun2-size "$(disk_bytes "$d2")" "$LUN2_BYTES"
expect_eq lun2-cache-writeback "$(cache_type "$d2")" "write back"
expect_eq lun2-fua "$(fua "$d2")" 1
expect_eq lun2-physical-block "$(sysf "$d2" queue/physical_block_size)" 512

# --- 2. file system, fio with verify, fstrim ---------------------------------
check mkfs-ext4 mkfs.ext4 -q -F "/dev/$d1"
# Mounted through /etc/fstab as the Pi does it (_netdev: after the network
# and iscsid; mount(8) itself ignores both options).
echo "UUID=$(blkid -s UUID -o value "/dev/$d1") /mnt ext4 _netdev,x-systemd.requires=iscsid.service 0 2" >/etc/fstab
check mount-ext4-from-fstab mount /mnt
check fio-verify-on-ext4-files fio_verify fsfiles --directory=/mnt --rw=randwrite --bs=16k --size=16m --numjobs=2
rm -f /mnt/fsfiles*
sync
host_sync fstrim-before
check fstrim fstrim -v /mnt
host_sync fstrim-after
expect_eq host-sees-fstrim-shrink "$REPLY" ok
check umount-ext4 umount /mnt
check fsck-clean fsck.ext4 -fn "/dev/$d1"

check fio-raw-randrw-verify fio_verify rawrw --filename="/dev/$d2" --rw=randrw --size=8m --iodepth=16
# Written now, checked after logout/login.
persist=(--filename="/dev/$d2" --rw=randwrite --size=4m --offset=64m --randseed=1234)
check fio-raw-write-for-relogin fio_verify persist "${persist[@]}"

# --- 3. logout/login, live resize --------------------------------------------
check logout-lun2 logout "$T_LUN2" node3
check login-lun2-again login "$T_LUN2" node3
d2=$(session_disk "$T_LUN2" "$INIT_NODE3" 0) || fatal disk-lun2 "no disk after login"
check verify-after-relogin fio_verify persist "${persist[@]}" --verify_only=1

host_sync resize-shared
expect_eq host-resized-lun "$REPLY" ok
check session-rescan iscsiadm -m session --rescan
wait_disk_bytes "$ds" "$SHARED_GROWN_BYTES"
expect_eq resize-seen-after-rescan "$(disk_bytes "$ds")" "$SHARED_GROWN_BYTES"

# --- 4. the daemon stopped under fio: SIGTERM, then SIGKILL --------------------
# fio writes with a verify backlog on LUN1 while the host stops and restarts
# ringtgt; the session must come back within replacement_timeout with no I/O
# error reaching fio and every block checked.
under_restart() { # under_restart SIGNAL
  local t0 t1
  fio_in_background "$1" "$d1" "$RESTART_FIO_SECONDS"
  t0=$(date +%s%N)
  host_sync "restart-$1"
  expect_eq "host-restarted-after-$1" "$REPLY" ok
  fio_came_through "$1"
  t1=$(date +%s%N)
  echo "restart-$1: fio finished $(((t1 - t0) / 1000000)) ms after the host was asked to act"
  iscsiadm -m session -P1 2>/dev/null | grep -E "Target:|Session State" | sed 's/^/  | /'
}
under_restart sigterm
under_restart sigkill

# --- issue 21: a live weakening of write_ack under a logged-in initiator ----
# The host puts write_ack = "writeback" on LUN1 in the config and reloads;
# whatever the daemon's rule (refuse, defer to the next login, apply), Linux
# must never believe "write through" while node1 acknowledges from cache: it
# would send no flush and no FUA, and an fsync on the Pi would return with
# the data only in node1's page cache. The host answers with the policy the
# daemon now applies to LUN1.
policy_cache_type() { [[ $1 == writeback ]] && echo "write back" || echo "write through"; }
host_sync weaken-lun1-to-writeback
echo "LUN1 write_ack after the reload: $REPLY"
expect_eq kernel-not-weaker-than-target-after-reload "$(cache_type "$d1")" "$(policy_cache_type "$REPLY")"
check logout-lun1 logout "$T_LUN1" default
check login-lun1-again login "$T_LUN1" default
d1=$(session_disk "$T_LUN1" "$INIT_NODE2" 0) || fatal disk-lun1 "no disk after login"
host_sync lun1-policy-after-relogin
echo "LUN1 write_ack after the new login: $REPLY"
expect_eq cache-type-after-relogin-matches-target "$(cache_type "$d1")" "$(policy_cache_type "$REPLY")"

# --- 6. every bench/fio job, briefly, on the shared LUN (node2's scratch) ------
for job in /e2e/bench/*.fio; do
  name=$(basename "$job" .fio)
  # Timed jobs: BENCH_SECONDS over 48 MiB regions. The verify jobs run to
  # the end of their size: 2 MiB each keeps them to seconds under TCG.
  size=48m
  grep -q '^time_based=1' "$job" || size=2m
  sed -e "s/^runtime=.*/runtime=$BENCH_SECONDS/" -e 's/^ramp_time=.*/ramp_time=0/' \
    -e "s/^size=.*/size=$size/" -e "s/^offset_increment=.*/offset_increment=$size/" "$job" >/tmp/job.fio
  if check "bench-$name" env DEV="/dev/$ds" fio /tmp/job.fio; then
    grep -E "^ *(read|write):" /tmp/out | sed "s/^ */  $name /"
  fi
done

# --- 5. digests against the default [iscsi] section (issue 20) ---------------
check logout-shared-node2 logout "$T_SHARED" default
node_set "$T_SHARED" default "node.conn[0].iscsi.HeaderDigest" CRC32C
node_set "$T_SHARED" default "node.conn[0].iscsi.DataDigest" CRC32C
if check login-with-crc32c-digests login "$T_SHARED" default; then
  iscsiadm -m session -P2 >/tmp/p2 2>&1
  grep -q "HeaderDigest: CRC32C" /tmp/p2 && grep -q "DataDigest: CRC32C" /tmp/p2 &&
    pass digests-negotiated || failc digests-negotiated "$(grep Digest /tmp/p2 | tr '\n' ';')"
  if ds=$(session_disk "$T_SHARED" "$INIT_NODE2" 0); then
    check fio-verify-with-digests fio_verify digests --filename="/dev/$ds" --rw=randrw --size=4m
  else
    failc fio-verify-with-digests "no disk after the digest login"
  fi
fi

check logout-all iscsiadm -m node -U all
finish
