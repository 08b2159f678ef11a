#!/usr/bin/env bash
# Side-by-side benchmark of ringtgt and Debian's tgt (tgtd) on this machine.
#
#   sudo bench/compare.sh --quick                 # smoke check, ~2 min
#   sudo bench/compare.sh                         # full matrix, ~12 min on 2 cores
#   sudo bench/compare.sh --write-ack writeback --cells 'randwrite|write-128k'
#   bench/compare/compare.py --summarize bench-compare-*.json   # re-print a saved run
#
# Installs tgt, fio and iperf3 if missing (apt-get; needs root, as does tgtd),
# builds ringtgt into build-cmp/ if needed (BUILD_DIR overrides), then runs
# bench/compare/compare.py, which starts both targets on free loopback ports
# (never 3260; tgtd on its own control port, so a system tgt is left alone),
# runs every cell against each target in alternation, and prints medians,
# [min–max] and ringtgt/tgt ratios for IOPS, target CPU µs per I/O and MiB/s,
# with the ceilings (fio io_uring on the backing file, iperf3 over loopback).
# All options: bench/compare/compare.py --help. Figures only: no pass/fail.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build-cmp}

missing=()
command -v tgtd >/dev/null || missing+=(tgt)
command -v fio >/dev/null || missing+=(fio)
command -v iperf3 >/dev/null || missing+=(iperf3)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "compare.sh: missing ${missing[*]}; run as root (or apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "compare.sh: installing ${missing[*]}" >&2
  # iperf3's package asks whether to start a daemon; answer no
  echo "iperf3 iperf3/start_daemon boolean false" | debconf-set-selections 2>/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "compare.sh: tgtd needs root" >&2
  exit 1
fi

# Always (incrementally) build, so a stale binary is never measured.
BUILD_DIR=$build_dir scripts/build.sh >&2

export COMPARE_ARGV0=bench/compare.sh
exec python3 bench/compare/compare.py \
  --ringtgt "$build_dir/ringtgt" --bench "$build_dir/bench/ringtgt-bench" "$@"
