#!/usr/bin/env bash
# Configures and builds ringtgt into build/ (BUILD_DIR and BUILD_TYPE override).
# Arguments name ninja targets to build (e.g. `ringtgt ringtgtctl`); none builds
# everything, tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
# shellcheck disable=SC2086 # NINJA_FLAGS is a list of flags
ninja -C "$build_dir" ${NINJA_FLAGS:-} "$@"
