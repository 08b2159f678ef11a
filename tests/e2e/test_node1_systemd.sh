#!/usr/bin/env bash
# End to end as node1 is deployed: the .deb that CPack builds from this build
# folder, installed with dpkg in a Debian 12 guest whose PID 1 is systemd,
# serving two LVM volumes with conf/node1.toml (unchanged: the guest puts
# node1's address, 10.0.0.11, on its loopback), driven by systemctl, with
# open-iscsi in the same guest. The guest (tests/e2e/node1_guest.sh) runs
# every step and reports it on its second serial port; this script builds
# the package and the guest, and fails on any failed or missing step.
#
# Environment: RINGTGT_BIN, RINGTGTCTL (from ctest; both must be built: the
# package holds them), RINGTGT_E2E_CACHE (guest image cache, default
# /var/cache/ringtgt-e2e when writable).
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/qemu_guest.sh"
: "${RINGTGTCTL:?RINGTGTCTL must name ringtgtctl}"
T_START=$(date +%s)

# --- the package, as tests/integration/test_package.sh builds it ---------------
build=$(cd "$(dirname "$RINGTGT_BIN")" && pwd)
[[ -x $RINGTGTCTL ]] || fail "$RINGTGTCTL is not built: the package must hold ringtgtctl"
run_ok "$TMP/cpack.txt" cpack -G DEB --config "$build/CPackConfig.cmake" -B "$TMP/pkg"
deb=$(ls "$TMP"/pkg/ringtgt_*.deb 2>/dev/null | head -n1)
[[ -n $deb ]] || { cat "$TMP/cpack.txt" >&2; fail "no ringtgt_*.deb built"; }
log "built $(basename "$deb") after $(($(date +%s) - T_START)) s"
# The guest has no network: the package's dependencies go into its image.
depends=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' | sort -u)
image=$(e2e_image node1 $depends) || fail "no guest image"
log "guest image $image (ready after $(($(date +%s) - T_START)) s)"

# --- this run's files over the cached root --------------------------------------
run=$TMP/run
mkdir -p "$run/e2e" "$run/etc/systemd/system/multi-user.target.wants"
cp "$e2e_dir/node1_guest.sh" "$e2e_dir/guest_checks.sh" "$e2e_dir/guest_iscsi.sh" "$run/e2e/"
cp "$deb" "$run/e2e/ringtgt.deb"
echo "NODE1_SHA256=$(sha256sum <"$RINGTGT_SRC/conf/node1.toml" | cut -d' ' -f1)" >"$run/e2e/params"
cat >"$run/etc/systemd/system/e2e-node1.service" <<'UNIT'
[Unit]
Description=ringtgt end-to-end: node1 as deployed (tests/e2e/node1_guest.sh)

[Service]
Type=simple
ExecStart=/e2e/node1_guest.sh
UNIT
ln -s ../e2e-node1.service "$run/etc/systemd/system/multi-user.target.wants/e2e-node1.service"
# What a headless guest on a RAM root does not need, masked so that systemd
# boots quickly under TCG (systemd-analyze blame and critical-chain in the
# guest showed these): logins and terminals, timers, file system checks and
# remounts, kernel file systems and modules nothing here uses.
for u in getty.target serial-getty@.service getty@.service console-getty.service \
  systemd-logind.service systemd-user-sessions.service systemd-update-utmp.service \
  systemd-update-utmp-runlevel.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  fstrim.timer dpkg-db-backup.timer systemd-tmpfiles-clean.timer e2scrub_reap.service \
  systemd-remount-fs.service systemd-sysusers.service systemd-random-seed.service \
  systemd-timesyncd.service systemd-networkd-wait-online.service systemd-journal-flush.service \
  systemd-pstore.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
  dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  sys-kernel-config.mount sys-fs-fuse-connections.mount modprobe@configfs.service \
  modprobe@efi_pstore.service modprobe@fuse.service modprobe@loop.service modprobe@drm.service; do
  ln -s /dev/null "$run/etc/systemd/system/$u"
done
e2e_initrd "$image" "$run" "$TMP/initrd"

# The LVM physical volumes: sparse files as virtio disks, /dev/vda (vg0) and
# /dev/vdb (vg1, the second disk of the mirror recipe).
truncate -s 1G "$TMP/pv.img"
truncate -s 512M "$TMP/pv2.img"
GUEST_REPORTS=$TMP/reports.log
boot_guest "$image" "$TMP/initrd" 2048 "rdinit=/lib/systemd/systemd quiet" \
  -nic none -drive "file=$TMP/pv.img,format=raw,if=virtio,cache=unsafe" \
  -drive "file=$TMP/pv2.img,format=raw,if=virtio,cache=unsafe" \
  -serial "file:$GUEST_REPORTS"

wait_report '^E2E: [0-9]+ passed, [0-9]+ failed'
grep -E '^(E2E|disks:|SIGSTOP)' "$GUEST_REPORTS" | grep -v '^E2E: ' || true
# The steps that must have passed: a guest that skipped one fails too.
guest_verdict systemd-is-pid1 dpkg-install unit-installed install-does-not-enable ringtgtctl-installed \
  example-is-conf-node1 pvcreate vgcreate lvcreate-lun1 lvcreate-lun2 lv-nodes secret-mode \
  install-config check-config enable-now active-when-start-returns active-after-ready \
  portal-listens-when-ready enabled \
  notify-status-text watchdog-armed ctl-lists-both-targets discovery-node2-sees-lun1-only \
  discovery-node3-sees-lun2-only login-lun1-as-node2 login-lun2-as-node3 lun1-size-is-lv-size \
  lun2-size-is-lv-size lun1-cache-writethrough lun2-cache-writethrough fio-verify-lun1 fio-verify-lun2 \
  lun1-data-on-lv metrics-lun1-session metrics-lun2-writes-counted lvcreate-lun3 systemctl-reload \
  reload-applied-in-journal ctl-lists-reloaded-target reload-keeps-process sessions-survive-reload \
  lvextend ctl-lun-resize session-rescan lun2-grown-seen-after-rescan fio-verify-grown-part \
  watchdog-fired fio-waiting-on-frozen-daemon watchdog-restarted-service watchdog-timeout-in-journal \
  watchdog-counted-restart fio-verify-across-watchdog-restart no-io-error-across-watchdog-restart \
  systemctl-stop-under-io fio-running-across-stop stopped stop-result-success stop-exit-status-0 \
  stop-drained-in-journal systemctl-start-again fio-verify-across-stop-start no-io-error-across-stop-start \
  disk2-present vgcreate-vg1 lvcreate-lun1-copy install-mirrored-config check-mirrored-config \
  reload-with-copy reload-with-copy-applied survives-one-copy copy-replace copy-filled \
  fio-verify-mirrored copies-equal disk2-fails fio-verify-disk2-failed no-io-error-disk2-failed \
  copy-out-of-sync copy-out-of-sync-in-journal disk2-back copy-resync copy-resynced \
  resync-dirty-only copies-equal-after-resync \
  logout-all
