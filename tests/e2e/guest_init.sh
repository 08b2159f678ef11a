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

npass=0
nfail=0
sync_no=0

# Seconds since boot, so a slow step shows on the console.
up() { cut -d' ' -f1 /proc/uptime; }
pass() {
  echo "E2E-PASS $1 [$(up)]"
  npass=$((npass + 1))
}
failc() {
  echo "E2E-FAIL $1: $2 [$(up)]"
  nfail=$((nfail + 1))
}
finish() {
  echo "E2E: $npass passed, $nfail failed"
  sync
  echo o >/proc/sysrq-trigger
  sleep 60
}

# check NAME CMD...: CMD must succeed; its output tail goes to the console if not.
check() {
  local name=$1 rc=0
  shift
  "$@" >/tmp/out 2>&1 || rc=$?
  if ((rc == 0)); then
    pass "$name"
  else
    tail -n 25 /tmp/out | sed 's/^/  | /'
    failc "$name" "exit $rc: $*"
  fi
  return $rc
}
# check_fails NAME STATUS CMD...: CMD must fail with exit status STATUS.
check_fails() {
  local name=$1 want=$2 rc=0
  shift 2
  "$@" >/tmp/out 2>&1 || rc=$?
  if ((rc == want)); then
    pass "$name"
  else
    tail -n 25 /tmp/out | sed 's/^/  | /'
    failc "$name" "exit $rc, expected $want: $*"
  fi
}
expect_eq() {
  if [[ $2 == "$3" ]]; then pass "$1"; else failc "$1" "expected '$3', got '$2'"; fi
}
# fatal NAME WHY: a step the rest depends on failed; report and stop.
fatal() {
  failc "$1" "$2"
  [[ -f /tmp/iscsid.log ]] && tail -n 20 /tmp/iscsid.log | sed 's/^/  iscsid | /'
  finish
}

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
conf=/etc/iscsi/iscsid.conf
setconf() {
  sed -i "/^#* *${1//[/\\[} *=/d" "$conf"
  echo "$1 = $2" >>"$conf"
}
setconf node.startup automatic
setconf node.session.timeo.replacement_timeout "$REPLACEMENT_TIMEOUT"
setconf node.conn[0].timeo.noop_out_interval 5
setconf node.conn[0].timeo.noop_out_timeout 10
setconf discovery.sendtargets.auth.authmethod CHAP
setconf discovery.sendtargets.auth.username "$DISC_USER"
setconf discovery.sendtargets.auth.password "$DISC_SECRET"
iscsid -f >/tmp/iscsid.log 2>&1 &
for ((i = 0; i < 100; i++)); do
  iscsiadm -m session >/dev/null 2>&1
  (($? != 20)) && break # 20: cannot connect to iscsid yet
  sleep 0.1
done

# An interface record per Pi: node3's name for the masking checks.
iscsiadm -m iface -I node3 -o new >/dev/null
iscsiadm -m iface -I node3 -o update -n iface.initiatorname -v "$INIT_NODE3" >/dev/null

node_set() { # node_set TARGET IFACE KEY VALUE
  iscsiadm -m node -T "$1" -p "$PORTAL" -I "$2" -o update -n "$3" -v "$4" ||
    fatal node-record "cannot set $3 on $1 ($2)"
}
# session_disk TARGET INITIATOR LUN: prints sdX once the kernel attached it.
session_disk() {
  local s dev b i
  for ((i = 0; i < 300; i++)); do
    for s in /sys/class/iscsi_session/session*; do
      [[ -e $s/targetname && $(cat "$s/targetname") == "$1" && $(cat "$s/initiatorname") == "$2" ]] || continue
      dev=$(readlink -f "$s/device")
      for b in "$dev"/target*/*:*:*:"$3"/block/*; do
        [[ -e $b ]] && { basename "$b"; return 0; }
      done
    done
    sleep 0.1
  done
  return 1
}
# session_luns TARGET INITIATOR: the LUN numbers the kernel found.
session_luns() {
  local s dev d
  for s in /sys/class/iscsi_session/session*; do
    [[ $(cat "$s/targetname") == "$1" && $(cat "$s/initiatorname") == "$2" ]] || continue
    dev=$(readlink -f "$s/device")
    for d in "$dev"/target*/*:*:*:*; do [[ -e $d ]] && echo "${d##*:}"; done
  done | sort -n | tr '\n' ' '
}
login() { iscsiadm -m node -T "$1" -p "$PORTAL" -I "$2" -l; }
logout() { iscsiadm -m node -T "$1" -p "$PORTAL" -I "$2" -u; }
sysf() { tr -d '\n' <"/sys/block/$1/$2" | sed 's/ *$//'; }
cache_type() { cat /sys/block/"$1"/device/scsi_disk/*/cache_type; }
fua() { cat /sys/block/"$1"/device/scsi_disk/*/FUA; }
io_errors() { dmesg | grep -c "I/O error" || true; }

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

chap() { # chap TARGET IFACE USER SECRET [MUTUAL_USER MUTUAL_SECRET]
  node_set "$1" "$2" node.session.auth.authmethod CHAP
  node_set "$1" "$2" node.session.auth.username "$3"
  node_set "$1" "$2" node.session.auth.password "$4"
  if [[ -n ${5:-} ]]; then
    node_set "$1" "$2" node.session.auth.username_in "$5"
    node_set "$1" "$2" node.session.auth.password_in "$6"
  fi
}
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

expect_eq lun1-size "$(($(sysf "$d1" size) * 512))" "$LUN1_BYTES"
expect_eq lun1-vendor "$(sysf "$d1" device/vendor)" RINGTGT
expect_eq lun1-model "$(sysf "$d1" device/model)" "ringtgt disk"
expect_eq lun1-cache-writethrough "$(cache_type "$d1")" "write through"
expect_eq lun1-fua "$(fua "$d1")" 1
expect_eq lun1-logical-block "$(sysf "$d1" queue/logical_block_size)" 512
expect_eq lun1-physical-block "$(sysf "$d1" queue/physical_block_size)" 4096
expect_eq lun1-discard-granularity "$(sysf "$d1" queue/discard_granularity)" 4096
(($(sysf "$d1" queue/discard_max_bytes) > 0)) && pass lun1-discard-enabled ||
  failc lun1-discard-enabled "discard_max_bytes is 0"
expect_eq lun2-size "$(($(sysf "$d2" size) * 512))" "$LUN2_BYTES"
expect_eq lun2-cache-writeback "$(cache_type "$d2")" "write back"
expect_eq lun2-fua "$(fua "$d2")" 1
expect_eq lun2-physical-block "$(sysf "$d2" queue/physical_block_size)" 512

# --- 2. file system, fio with verify, fstrim ---------------------------------
fio_verify() { # fio_verify NAME FILE-OR-DIR-OPTION... : 4k random writes, CRC32C checked
  local name=$1
  shift
  fio --name="$name" --ioengine=libaio --direct=1 --bs=4k --iodepth=8 --verify=crc32c \
    --verify_fatal=1 --do_verify=1 "$@"
}
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
for ((i = 0; i < 100; i++)); do
  (($(sysf "$ds" size) * 512 == SHARED_GROWN_BYTES)) && break
  sleep 0.1
done
expect_eq resize-seen-after-rescan "$(($(sysf "$ds" size) * 512))" "$SHARED_GROWN_BYTES"

# --- 4. the daemon stopped under fio: SIGTERM, then SIGKILL --------------------
# fio writes with a verify backlog on LUN1 while the host stops and restarts
# ringtgt; the session must come back within replacement_timeout with no I/O
# error reaching fio and every block checked.
under_restart() { # under_restart SIGNAL
  local errs_before rc=0 w0 t0 t1
  errs_before=$(io_errors)
  fio_verify "restart-$1" --filename="/dev/$d1" --rw=randwrite --size=32m --time_based \
    --runtime="$RESTART_FIO_SECONDS" --verify_backlog=256 >"/tmp/fio-$1" 2>&1 &
  local fpid=$!
  # Wait until fio's writes reach the disk before the host acts.
  w0=$(awk '{print $5}' "/sys/block/$d1/stat")
  for ((i = 0; i < 300; i++)); do
    (($(awk '{print $5}' "/sys/block/$d1/stat") > w0 + 64)) && break
    sleep 0.1
  done
  t0=$(date +%s%N)
  host_sync "restart-$1"
  expect_eq "host-restarted-after-$1" "$REPLY" ok
  wait "$fpid" || rc=$?
  t1=$(date +%s%N)
  if ((rc == 0)); then pass "fio-verify-across-$1"; else
    tail -n 20 "/tmp/fio-$1" | sed 's/^/  | /'
    failc "fio-verify-across-$1" "fio exit $rc"
  fi
  expect_eq "no-io-error-across-$1" "$(io_errors)" "$errs_before"
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
