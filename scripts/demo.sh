#!/usr/bin/env bash
# Quick start 1: installs what is missing, builds, and runs the daemon in the
# foreground with conf/demo.toml (sparse files under state/, portal 127.0.0.1:3260).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
# Only the daemon and its CLI: the test command builds the rest.
scripts/build.sh ringtgt ringtgtctl
exec build/ringtgt --config conf/demo.toml "$@"
