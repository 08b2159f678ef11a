#!/usr/bin/env bash
# Installs the Debian 12 packages ringtgt builds and tests with. Idempotent and
# quiet when everything is there already. Needs root (or sudo) to install.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config clang-format
  liburing-dev libboost-dev libspdlog-dev libtomlplusplus-dev prometheus-cpp-dev
  googletest libgtest-dev nlohmann-json3-dev libsystemd-dev libisal-dev libssl-dev
  libiscsi-bin libiscsi-dev qemu-utils qemu-block-extra python3 iproute2
  # operations: /metrics scrapes, systemd-analyze verify, cpack -G DEB (dpkg-shlibdeps)
  curl systemd dpkg-dev file  # file: CPackDeb's shlibdeps needs it
  clang-14 libclang-rt-14-dev  # libFuzzer targets (tests/fuzz)
  # alert rules and scrape config (conf/prometheus): promtool, and a real
  # Prometheus run on loopback by tests/integration/test_prometheus_alerts.sh
  prometheus python3-yaml
  # tests/e2e: a Debian guest under qemu (TCG) with open-iscsi, built by debootstrap
  qemu-system-x86 debootstrap cpio
  # RBD LUNs: librbd/librados to build; a one-node Ceph cluster (tests/ceph/cluster.sh) to test
  librbd-dev librados-dev ceph-mon ceph-mgr ceph-osd ceph-common
  # tests/integration/test_faults*.sh: JSON answers of ringtgtctl, read inside a
  # 2 s timing window (python3 may take that long just to start), and losetup
  jq util-linux
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: run as root to install packages" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The prometheus package enables (and where systemd runs, starts) its own
# service on :9090. The tests never use it: they run the binary on a loopback
# port of their own with their own storage, so it is left as the admin wants it.
