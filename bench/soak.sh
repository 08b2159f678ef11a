#!/usr/bin/env bash
# The long chaos soak (issue 15): tests/integration/test_soak.sh with 64
# sessions (16 per LUN, 4 LUNs on 2 targets) and minutes of chaos.
#
# usage: bench/soak.sh [--seed N] [--duration SECONDS] [--sessions PER_LUN] [--chaos RATE]
#   --duration  total chaos time, split over the two chaos phases (default 300)
#   --seed      replays the chaos choices of an earlier run (printed at the start)
#   --chaos     events per second per LUN's bench (default 3)
# Environment: RINGTGT_BIN (default build/ringtgt); the bench and ringtgtctl
# are found beside it. Exit status 0 when every check of test_soak.sh held.
set -euo pipefail
cd "$(dirname "$0")/.."
seed=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
duration=300
sessions=16
chaos=3
while (($#)); do
  case $1 in
    --seed) seed=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --chaos) chaos=$2; shift 2 ;;
    *) echo "usage: $0 [--seed N] [--duration SECONDS] [--sessions PER_LUN] [--chaos RATE]" >&2; exit 2 ;;
  esac
done
RINGTGT_BIN=$(realpath "${RINGTGT_BIN:-build/ringtgt}")
export RINGTGT_BIN
SOAK_SEED=$seed SOAK_SESSIONS=$sessions SOAK_RUNTIME=$((duration / 2)) SOAK_CHAOS=$chaos \
  exec bash tests/integration/test_soak.sh
