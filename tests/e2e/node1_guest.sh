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

check logout-all iscsiadm -m node -U all
finish
