#!/bin/bash
# node1 as it is deployed, in a guest whose PID 1 is systemd: the ringtgt
# .deb installed with dpkg, an LVM volume group on a virtio disk (/dev/vda)
# with lun1 and lun2, conf/node1.toml as /etc/ringtgt/ringtgt.toml, and the
# service run by systemd. An initiator in the same guest plays node2 and
# node3 over the loopback. docs/homelab.md ("On node1") is these steps.
#
# Run by e2e-node1.service (test_node1_systemd.sh writes it). Every check is
# reported on ttyS1 (guest_checks.sh), which the host reads; the console
# (ttyS0) has the kernel's and systemd's messages.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb
stty -F /dev/ttyS1 raw -echo
exec >/dev/ttyS1 2>&1
. /e2e/params
. /e2e/guest_checks.sh
. /e2e/guest_iscsi.sh
fatal_context() { journalctl -b --no-pager -o cat -n 30 -u ringtgt -u iscsid | sed 's/^/  journal | /'; }

iqn=iqn.2025-01.com.jacobgade
T_LUN1=$iqn:node1.lun1
T_LUN2=$iqn:node1.lun2
T_LUN3=$iqn:node1.lun3
INIT_NODE2=$iqn:node2
INIT_NODE3=$iqn:node3
# node1's LAN address, as conf/node1.toml has it. The guest has no NIC: the
# address sits on its loopback, so the initiator reaches the daemon there.
PORTAL=10.0.0.11:3260
METRICS=http://10.0.0.11:9105/metrics
S=/etc/ringtgt/secrets

ringtgt_log() { journalctl -b -u ringtgt --no-pager -o cat; }
# log_count REGEX: how many lines of the unit's journal (this boot) match.
log_count() { ringtgt_log | grep -c -E -- "$1"; }
# wait_log REGEX COUNT SECONDS: until COUNT lines match (journalctl reads the
# whole boot's journal: twice a second is enough).
wait_log() {
  local i
  for ((i = 0; i < $3 * 2; i++)); do
    (($(log_count "$1") >= $2)) && return 0
    sleep 0.5
  done
  return 1
}
unit() { systemctl show -p "$1" --value ringtgt; }
# wait_left_active SECONDS: until systemd is no longer running the service
# as active (it is stopping, failed or restarting it).
wait_left_active() {
  local i
  for ((i = 0; i < $1 * 4; i++)); do
    [[ $(unit ActiveState) != active ]] && return 0
    sleep 0.25
  done
  return 1
}
# wait_restarted OLD_PID SECONDS: until the service is active again under a
# new main process (Type=notify: active means READY=1 was sent).
wait_restarted() {
  local i
  for ((i = 0; i < $2 * 4; i++)); do
    [[ $(unit ActiveState) == active && $(unit MainPID) != "$1" && $(unit MainPID) != 0 ]] && return 0
    sleep 0.25
  done
  return 1
}
# metric SERIES: its value in a fresh scrape.
metric() { curl -sf "$METRICS" | awk -v s="$1" '$1 == s {print $2}'; }
secret() { cat "$S/$1"; }

expect_eq systemd-is-pid1 "$(cat /proc/1/comm)" systemd

# --- 1. the package -----------------------------------------------------------
check dpkg-install dpkg -i /e2e/ringtgt.deb || fatal install "dpkg -i failed"
check unit-installed systemctl cat ringtgt.service
expect_eq install-does-not-enable "$(systemctl is-enabled ringtgt)" disabled
check ringtgtctl-installed test -x /usr/bin/ringtgtctl
expect_eq example-is-conf-node1 "$(sha256sum </usr/share/doc/ringtgt/examples/node1.toml)" "$NODE1_SHA256  -"

# --- 2. LVM: the volume group and the two LUN volumes ----------------------------
check disk-present udevadm wait --timeout=30 /dev/vda || fatal disk "no /dev/vda"
check pvcreate pvcreate /dev/vda || fatal lvm "see above"
check vgcreate vgcreate vg0 /dev/vda || fatal lvm "see above"
check lvcreate-lun1 lvcreate -n lun1 -L 256M vg0
check lvcreate-lun2 lvcreate -n lun2 -L 128M vg0
check lv-nodes test -b /dev/vg0/lun1 -a -b /dev/vg0/lun2 || fatal lvm "no /dev/vg0/lun1, lun2"

# --- 3. secrets and the config, as conf/node1.toml's header says ------------------
install -d -m 0700 "$S"
for f in discovery node2 node3 node1-for-node2 node1-for-node3; do
  (umask 077; openssl rand -base64 24 >"$S/$f")
done
expect_eq secret-mode "$(stat -c %a "$S/node2")" 600
check install-config install -m 0644 /usr/share/doc/ringtgt/examples/node1.toml /etc/ringtgt/ringtgt.toml
check check-config ringtgt --check-config --config /etc/ringtgt/ringtgt.toml || fatal config "see above"
ip addr add 10.0.0.11/32 dev lo

# --- 4. the service: Type=notify readiness ------------------------------------
check enable-now systemctl enable --now ringtgt || fatal service "systemctl enable --now failed"
# `systemctl start` returns once the daemon sent READY=1, which it sends only
# after every portal listens: no wait is needed before using it.
expect_eq active-when-start-returns "$(systemctl is-active ringtgt)" active
# And the order shows it: systemd made the unit active (its clock, µs) no
# earlier than the daemon logged "...; ready" (its clock, ms), just before it
# sent READY=1. A Type=simple unit would be active before the daemon began.
ready_at=$(ringtgt_log | sed -n -E 's/^([0-9-]+ [0-9:.]+) info [0-9]+ workers, [0-9]+ targets; ready$/\1/p' | head -n1)
active_at=$(systemctl show --timestamp=us -p ActiveEnterTimestamp --value ringtgt)
if [[ -n $ready_at ]] && (($(date -d "$ready_at" +%s%6N) <= $(date -d "$active_at" +%s%6N))); then
  pass active-after-ready
else
  failc active-after-ready "daemon ready at '$ready_at', unit active at '$active_at' ($(ringtgt_log | grep -m1 'ready$'))"
fi
ss -Htln 'sport = :3260' >/tmp/ss
grep -q '10.0.0.11:3260' /tmp/ss && pass portal-listens-when-ready || failc portal-listens-when-ready "$(cat /tmp/ss)"
expect_eq enabled "$(systemctl is-enabled ringtgt)" enabled
status=$(unit StatusText)
[[ $status == "serving 2 targets, "* ]] && pass notify-status-text || failc notify-status-text "StatusText '$status'"
ringtgt_log | grep -q 'systemd watchdog: 30000 ms' && pass watchdog-armed ||
  failc watchdog-armed "no 'systemd watchdog: 30000 ms' in the journal"
check ctl-target-list ringtgtctl target list
grep -q "$T_LUN1" /tmp/out && grep -q "$T_LUN2" /tmp/out && pass ctl-lists-both-targets ||
  failc ctl-lists-both-targets "$(tr '\n' ';' </tmp/out)"

# --- 5. the initiator (node2's and node3's names) over the loopback --------------
echo "InitiatorName=$INIT_NODE2" >/etc/iscsi/initiatorname.iscsi
iscsid_conf node.startup automatic
iscsid_conf node.session.timeo.replacement_timeout 60
iscsid_conf node.conn[0].timeo.noop_out_interval 5
iscsid_conf node.conn[0].timeo.noop_out_timeout 10
iscsid_conf discovery.sendtargets.auth.authmethod CHAP
iscsid_conf discovery.sendtargets.auth.username discovery
iscsid_conf discovery.sendtargets.auth.password "$(secret discovery)"
check iscsid-restart systemctl restart iscsid
wait_iscsid || fatal iscsid "iscsiadm cannot reach iscsid"
iscsiadm -m iface -I node3 -o new >/dev/null
iscsiadm -m iface -I node3 -o update -n iface.initiatorname -v "$INIT_NODE3" >/dev/null

check discovery-node2 iscsiadm -m discovery -t sendtargets -p "$PORTAL" -I default || fatal discovery "see above"
grep -q "^$PORTAL,[0-9]* $T_LUN1\$" /tmp/out && ! grep -q " $T_LUN2\$" /tmp/out &&
  pass discovery-node2-sees-lun1-only || failc discovery-node2-sees-lun1-only "$(tr '\n' ';' </tmp/out)"
check discovery-node3 iscsiadm -m discovery -t sendtargets -p "$PORTAL" -I node3 -o new
grep -q " $T_LUN2\$" /tmp/out && ! grep -q " $T_LUN1\$" /tmp/out &&
  pass discovery-node3-sees-lun2-only || failc discovery-node3-sees-lun2-only "$(tr '\n' ';' </tmp/out)"
chap "$T_LUN1" default node2 "$(secret node2)" node1 "$(secret node1-for-node2)"
chap "$T_LUN2" node3 node3 "$(secret node3)" node1 "$(secret node1-for-node3)"
check login-lun1-as-node2 login "$T_LUN1" default || fatal login "cannot continue"
check login-lun2-as-node3 login "$T_LUN2" node3 || fatal login "cannot continue"
d1=$(session_disk "$T_LUN1" "$INIT_NODE2" 0) || fatal disk-lun1 "no disk attached"
d2=$(session_disk "$T_LUN2" "$INIT_NODE3" 0) || fatal disk-lun2 "no disk attached"
echo "disks: lun1=$d1 lun2=$d2"
expect_eq lun1-size-is-lv-size "$(disk_bytes "$d1")" "$(blockdev --getsize64 /dev/vg0/lun1)"
expect_eq lun2-size-is-lv-size "$(disk_bytes "$d2")" "$(blockdev --getsize64 /dev/vg0/lun2)"
expect_eq lun1-cache-writethrough "$(cache_type "$d1")" "write through"
expect_eq lun2-cache-writethrough "$(cache_type "$d2")" "write through"
check fio-verify-lun1 fio_verify lun1 --filename="/dev/$d1" --rw=randrw --size=8m --iodepth=16
check fio-verify-lun2 fio_verify lun2 --filename="/dev/$d2" --rw=randrw --size=8m --iodepth=16
# What the initiator wrote is on the logical volume itself.
check lun1-data-on-lv cmp <(dd if="/dev/$d1" bs=1M count=8 iflag=direct status=none) \
  <(dd if=/dev/vg0/lun1 bs=1M count=8 iflag=direct status=none)

# --- 6. metrics --------------------------------------------------------------
expect_eq metrics-lun1-session "$(metric "ringtgt_target_sessions{target=\"$T_LUN1\"}")" 1
writes=$(metric "ringtgt_lun_operations_total{target=\"$T_LUN2\",lun=\"0\",kind=\"write\"}")
((${writes:-0} > 0)) && pass metrics-lun2-writes-counted || failc metrics-lun2-writes-counted "writes '$writes'"

# --- 7. systemctl reload: a third volume and target, applied live ------------------
check lvcreate-lun3 lvcreate -n lun3 -L 64M vg0
(umask 077; openssl rand -base64 24 >"$S/node4")
cat >>/etc/ringtgt/ringtgt.toml <<EOF

[[target]]
name = "$T_LUN3"
alias = "node1-lun3"
allowed_initiators = ["$iqn:node4"]
chap_user = "node4"
chap_secret_file = "/etc/ringtgt/secrets/node4"

  [[target.lun]]
  number = 0
  path = "/dev/vg0/lun3"
  block_size = 512
  direct_io = true
  write_ack = "writethrough"
EOF
pid=$(unit MainPID)
applied='reload done: [1-9][0-9]* change\(s\) applied, 0 left for a restart'
reloads=$(log_count "$applied")
check systemctl-reload systemctl reload ringtgt
# ExecReload only sends SIGHUP: the journal says when the daemon applied it.
wait_log "$applied" $((reloads + 1)) 30 && pass reload-applied-in-journal ||
  failc reload-applied-in-journal "$(ringtgt_log | grep -i reload | tail -n 3 | tr '\n' ';')"
check ctl-target-list-after-reload ringtgtctl target list
grep -q "$T_LUN3" /tmp/out && pass ctl-lists-reloaded-target || failc ctl-lists-reloaded-target "$(tr '\n' ';' </tmp/out)"
expect_eq reload-keeps-process "$(unit MainPID)" "$pid"
check ctl-session-list ringtgtctl session list
(($(grep -c -E "$T_LUN1|$T_LUN2" /tmp/out) >= 2)) && pass sessions-survive-reload ||
  failc sessions-survive-reload "$(tr '\n' ';' </tmp/out)"

# --- 8. grow a LUN: lvextend + ringtgtctl lun resize + rescan ------------------------
check lvextend lvextend -L +64M vg0/lun2
grown=$(blockdev --getsize64 /dev/vg0/lun2)
check ctl-lun-resize ringtgtctl lun resize --target "$T_LUN2" --lun 0 --size 192M
check session-rescan iscsiadm -m session --rescan
wait_disk_bytes "$d2" "$grown"
expect_eq lun2-grown-seen-after-rescan "$(disk_bytes "$d2")" "$grown"
check fio-verify-grown-part fio_verify grown --filename="/dev/$d2" --rw=randwrite --offset=128m --size=4m

# --- 9. the watchdog: a stopped daemon is killed and started again ---------------
# SIGSTOP freezes every reactor: no WATCHDOG=1 reaches systemd, which kills
# the service after WatchdogSec=30s and restarts it (Restart=on-failure).
# fio keeps writing on LUN1 meanwhile; the session must come back within
# replacement_timeout with no I/O error and every block verified.
pid=$(unit MainPID)
restarts=$(unit NRestarts)
fio_in_background watchdog-restart "$d1" 8
kill -STOP "$pid"
echo "SIGSTOP to ringtgt ($pid) [$(up)]"
# Polled with systemctl (cheap), not journalctl: the guest's CPU goes to
# the restart.
wait_left_active 90 && pass watchdog-fired || failc watchdog-fired "still active 90 s after SIGSTOP"
# fio is still waiting on the frozen target: the restart happens under I/O.
kill -0 "$FIO_PID" 2>/dev/null && pass fio-waiting-on-frozen-daemon ||
  failc fio-waiting-on-frozen-daemon "fio ended before the watchdog fired"
wait_restarted "$pid" 60 && pass watchdog-restarted-service ||
  failc watchdog-restarted-service "$(unit ActiveState) pid $(unit MainPID)"
ringtgt_log | grep -q 'Watchdog timeout' && pass watchdog-timeout-in-journal ||
  failc watchdog-timeout-in-journal "no 'Watchdog timeout' from systemd"
expect_eq watchdog-counted-restart "$(unit NRestarts)" "$((restarts + 1))"
fio_came_through watchdog-restart

# --- 10. systemctl stop drains in-flight I/O ---------------------------------------
# SIGTERM: the daemon closes the portals, finishes the commands in flight
# and exits 0 (Result=success, not a stop timeout); started again, the
# session resumes and fio sees no error.
drains=$(log_count 'finishing in-flight commands')
stops=$(log_count ' stopped$')
fio_in_background stop-start "$d2" 8
check systemctl-stop-under-io systemctl stop ringtgt
kill -0 "$FIO_PID" 2>/dev/null && pass fio-running-across-stop ||
  failc fio-running-across-stop "fio ended before the daemon was stopped"
expect_eq stopped "$(systemctl is-active ringtgt)" inactive
expect_eq stop-result-success "$(unit Result)" success
expect_eq stop-exit-status-0 "$(unit ExecMainCode):$(unit ExecMainStatus)" "1:0"
(($(log_count 'finishing in-flight commands') > drains && $(log_count ' stopped$') > stops)) &&
  pass stop-drained-in-journal || failc stop-drained-in-journal "no 'finishing in-flight commands' and 'stopped'"
check systemctl-start-again systemctl start ringtgt
fio_came_through stop-start

# --- 11. the homelab recipe: LUN1 mirrored to a second disk ------------------------
# docs/replication.md ("The homelab"), step by step: a second disk (/dev/vdb)
# as volume group vg1, the copy in the config, systemctl reload, copy
# replace to fill it; then that disk fails (device-mapper's error target
# under the LV) under node2's writes, and comes back and is resynced.
copy_state() { ringtgtctl copy list --target "$T_LUN1" | awk -v c="$1" '$3 == c {print $4}'; }
# copy_resynced COPY: bytes its resyncs copied so far (copy.list's
# resynced_bytes; the guest has no JSON tool, and the table rounds).
copy_resynced() {
  ringtgtctl --json copy list --target "$T_LUN1" | tr -d ' \n' | grep -o "\"copy\":\"$1\"[^}]*" |
    sed -n 's/.*"resynced_bytes":\([0-9]*\).*/\1/p'
}
# wait_copy COPY STATE SECONDS
wait_copy() {
  local i
  for ((i = 0; i < $3 * 2; i++)); do
    [[ $(copy_state "$1") == "$2" ]] && return 0
    sleep 0.5
  done
  return 1
}
lvs_equal() {
  cmp <(dd if=/dev/vg0/lun1 bs=1M iflag=direct status=none) \
    <(dd if=/dev/vg1/lun1-copy bs=1M iflag=direct status=none)
}
# dm_table DEV TABLE: swaps the live table of the LV's device-mapper device.
dm_table() { dmsetup suspend "$1" && dmsetup load "$1" --table "$2" && dmsetup resume "$1"; }
check disk2-present udevadm wait --timeout=30 /dev/vdb || fatal disk2 "no /dev/vdb"
check vgcreate-vg1 sh -c 'pvcreate /dev/vdb && vgcreate vg1 /dev/vdb' || fatal lvm "see above"
check lvcreate-lun1-copy lvcreate -n lun1-copy -L "$(blockdev --getsize64 /dev/vg0/lun1)b" vg1
# LUN1's table gets the recipe's keys and copy: before the second [[target]].
cat >/tmp/copy.toml <<'EOF'
  ack_quorum = 1              # writes go on when one disk fails
  failure_domain = "disk:vda"
    [[target.lun.copy]]
    name = "disk2"
    path = "/dev/vg1/lun1-copy"
    failure_domain = "disk:vdb"

EOF
awk 'FNR == NR {b = b $0 "\n"; next} /^\[\[target\]\]/ && ++n == 2 {printf "%s", b} {print}' \
  /tmp/copy.toml /etc/ringtgt/ringtgt.toml >/tmp/mirrored.toml
check install-mirrored-config install -m 0644 /tmp/mirrored.toml /etc/ringtgt/ringtgt.toml
check check-mirrored-config ringtgt --check-config --config /etc/ringtgt/ringtgt.toml
reloads=$(log_count "$applied")
check reload-with-copy systemctl reload ringtgt
wait_log "$applied" $((reloads + 1)) 30 && pass reload-with-copy-applied ||
  failc reload-with-copy-applied "$(ringtgt_log | grep -i reload | tail -n 3 | tr '\n' ';')"
ringtgt_log | grep -q "node1.lun1 LUN 0: survives the loss of 1 copy" && pass survives-one-copy ||
  failc survives-one-copy "$(ringtgt_log | grep -i survives | tail -n 2 | tr '\n' ';')"
check copy-replace ringtgtctl copy replace --target "$T_LUN1" --lun 0 --copy disk2
wait_copy disk2 in_sync 120 && pass copy-filled || failc copy-filled "disk2 is $(copy_state disk2)"
check fio-verify-mirrored fio_verify mirrored --filename="/dev/$d1" --rw=randwrite --size=8m
check copies-equal lvs_equal
# The second disk fails: every I/O to the copy's LV errors (EIO).
sectors=$(blockdev --getsz /dev/vg1/lun1-copy)
table=$(dmsetup table vg1-lun1--copy)
# The copy's own I/O errors are in dmesg too: only node2's disk counts.
disk_io_errors() { dmesg | grep -c -E "I/O error, dev $1\b" || true; }
errs=$(disk_io_errors "$d1")
check disk2-fails dm_table vg1-lun1--copy "0 $sectors error"
check fio-verify-disk2-failed fio_verify disk2-failed --filename="/dev/$d1" --rw=randwrite \
  --offset=32m --size=8m
expect_eq no-io-error-disk2-failed "$(disk_io_errors "$d1")" "$errs"
expect_eq copy-out-of-sync "$(copy_state disk2)" out_of_sync
ringtgt_log | grep -q "copy disk2 of target $T_LUN1 LUN 0 out of sync: write failed" &&
  pass copy-out-of-sync-in-journal || failc copy-out-of-sync-in-journal "no 'out of sync' line"
# It comes back: the LV's own table again, and a resync of what it missed.
before=$(copy_resynced disk2)
check disk2-back dm_table vg1-lun1--copy "$table"
check copy-resync ringtgtctl copy resync --target "$T_LUN1" --lun 0 --copy disk2
wait_copy disk2 in_sync 120 && pass copy-resynced || failc copy-resynced "disk2 is $(copy_state disk2)"
resynced=$(($(copy_resynced disk2) - before))
((resynced > 0 && resynced < 64 << 20)) && pass resync-dirty-only ||
  failc resync-dirty-only "resynced $resynced bytes of a 256 MiB LUN"
check copies-equal-after-resync lvs_equal

check logout-all iscsiadm -m node -U all
finish
