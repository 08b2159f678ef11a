#!/usr/bin/env bash
# Builds (or finds in the cache) the Debian 12 guest the end-to-end tests boot
# under qemu: an ELF vmlinux (booted through qemu's PVH entry, so TCG does not
# spend seconds decompressing a bzImage) and an uncompressed initramfs holding
# a debootstrap minbase root with open-iscsi, fio and friends, plus only the
# kernel modules the tests load. Nothing is installed on the host: the kernel
# package is unpacked with dpkg-deb.
#
#   tests/e2e/build_guest.sh CACHE_DIR FLAVOR [PACKAGE...]   -> prints the image folder
#
# FLAVOR is what the guest is for:
#   initiator  a Pi: open-iscsi and fio, started by a small /init
#              (test_kernel_initiator.sh)
#   node1      node1 as deployed: systemd as PID 1, udev, LVM on a virtio
#              disk, openssl for the secrets, curl for /metrics, plus the
#              PACKAGEs (the ringtgt .deb's dependencies, so that dpkg -i
#              installs it with no network) (test_node1_systemd.sh)
#
# The image folder is CACHE_DIR/FLAVOR-<hash>, the hash covering this script,
# the kernel package version and the packages, so a change to any builds a
# new image; older images of the same flavor are removed. A lock serialises
# builds by concurrent test runs.
set -euo pipefail

cache=${1:?usage: build_guest.sh CACHE_DIR FLAVOR [PACKAGE...]}
flavor=${2:?usage: build_guest.sh CACHE_DIR FLAVOR [PACKAGE...]}
shift 2
mirror=${RINGTGT_E2E_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
# What every guest needs: the initiator, the load generator, file systems,
# lsblk/blockdev, modprobe, nft for the portal redirect, ip for the NIC.
guest_packages=open-iscsi,fio,e2fsprogs,util-linux,kmod,nftables,iproute2,procps
# Modules whose dependency closure goes into the image.
guest_modules=(virtio_pci virtio_net iscsi_tcp sd_mod ext4 crc32c_generic crc32c-intel
  nft_chain_nat nft_nat nft_masq nf_tables)
case $flavor in
  initiator) ;;
  node1)
    guest_packages+=,systemd,udev,lvm2,openssl,curl
    guest_modules+=(virtio_blk dm_mod)
    ;;
  *) echo "build_guest: unknown flavor $flavor" >&2; exit 2 ;;
esac
# real_package NAME: NAME, or the package that provides it when it is virtual
# (a Depends: libspdlog1.10-fmt9 is provided by libspdlog1.10); debootstrap
# --include takes real packages only.
real_package() {
  if [[ $(apt-cache policy "$1" | awk '/Candidate:/ {print $2}') == "(none)" ]]; then
    apt-cache showpkg "$1" | sed -n '/^Reverse Provides:/{n;p;q}' | cut -d' ' -f1
  else
    echo "$1"
  fi
}
for p in "$@"; do
  real=$(real_package "$p")
  [[ -n $real ]] || { echo "build_guest: no package provides $p (run apt-get update)" >&2; exit 1; }
  guest_packages+=,$real
done

kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
[[ -n $kernel_pkg ]] || { echo "build_guest: apt-cache knows no linux-image-amd64 (run apt-get update)" >&2; exit 1; }
kernel_ver=$(apt-cache show "$kernel_pkg" | sed -n 's/^Version: //p' | head -n1)
key=$( (cat "$0"; echo "$kernel_pkg $kernel_ver $suite $guest_packages ${guest_modules[*]}") | sha256sum | cut -c1-16)
image=$cache/$flavor-$key

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [[ -f $image/ready ]]; then
  echo "$image"
  exit 0
fi

log() { echo "[build_guest $(date +%T)] $*" >&2; }
# unmount_under DIR: debootstrap mounts proc/sys inside the root; a folder is
# removed only after they are gone (and rm never crosses into them).
unmount_under() {
  local m
  for m in $(awk -v w="$1" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m" || true; done
}
# Under the lock no other build runs: a .build folder left now is from a
# build that was killed (e.g. a ctest timeout).
unmount_under "$cache/.build."
rm -rf --one-file-system "$cache"/.build.*
log "building guest image $flavor-$key ($kernel_pkg $kernel_ver) in $cache"
work=$(mktemp -d "$cache/.build.XXXXXX")
cleanup() {
  unmount_under "$work"
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# 1. The root file system.
root=$work/root
debootstrap --variant=minbase --include="$guest_packages" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  echo "build_guest: debootstrap failed" >&2
  exit 1
}

# 2. The kernel: unpacked, not installed.
# Stale package lists name a kernel the mirror no longer has: refresh once.
download_kernel() { (cd "$work" && apt-get download -o APT::Sandbox::User=root "$kernel_pkg" >/dev/null); }
download_kernel || { apt-get update -qq && download_kernel; }
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
kver=$(ls "$work/kernel/lib/modules")
python3 "$(dirname "$0")/extract_vmlinux.py" "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinux"

# 3. Only the modules the tests load (their dependency closure), found with
# the guest's own modprobe against the full module tree.
mkdir -p "$root/lib/modules"
cp -a "$work/kernel/lib/modules/$kver" "$root/lib/modules/"
chroot "$root" depmod "$kver"
needed=$(for m in "${guest_modules[@]}"; do
  chroot "$root" modprobe -S "$kver" --show-depends "$m"
done | awk '$1 == "insmod" {print $2}' | sort -u)
mv "$root/lib/modules/$kver" "$work/allmods"
for f in $needed; do
  mkdir -p "$root$(dirname "$f")"
  cp "$work/allmods/${f#/lib/modules/$kver/}" "$root$f"
done
cp "$work/allmods"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/"
chroot "$root" depmod "$kver"
echo "$kver" >"$root/etc/e2e-kernel-version"

# 4. Slim it: documentation, locales and apt's lists are dead weight that the
# kernel would unpack on every boot.
# Python comes with fio (its helper scripts, unused here); udev's hardware
# database only names devices (vendor and model strings).
rm -rf "$root"/usr/share/{doc,man,info,locale} "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
  "$root"/usr/lib/python3* "$root"/usr/lib/udev/hwdb.bin
rm -f "$root/etc/iscsi/initiatorname.iscsi"

# 5. The initramfs: newc cpio, uncompressed (decompressing under TCG is slow).
mkdir -p "$work/out"
(cd "$root" && find . -xdev -print0 | cpio --null -o -H newc --quiet) >"$work/out/rootfs.cpio"
mv "$work/vmlinux" "$work/out/vmlinux"
echo "$kernel_pkg $kernel_ver" >"$work/out/kernel-version"
# The older images of this flavor, and those from before flavors (no "-").
for old in "$cache/$flavor"-*/ "$cache"/*/; do
  [[ -d $old && ( $old == "$cache/$flavor"-* || $(basename "$old") != *-* ) ]] && rm -rf "$old"
done
mv "$work/out" "$image"
touch "$image/ready"
log "guest image ready: $(du -sh "$image" | cut -f1)"
echo "$image"
