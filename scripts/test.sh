#!/usr/bin/env bash
# Quick start 2: installs what is missing, builds, and runs every test: unit,
# integration with real initiators, the conformance list, then the unit and
# integration suites again on an AddressSanitizer + UBSan build.
# Extra arguments go to ctest (e.g. -R qemu). RINGTGT_SKIP_SANITIZE=1 skips
# the sanitizer pass; RINGTGT_SKIP_FUZZ=1 skips the fuzzers (tests/fuzz/run.sh,
# FUZZ_SECONDS per target).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure --timeout 1800 "$@")

if [ "${RINGTGT_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== libFuzzer targets (clang, ASan + UBSan), ${FUZZ_SECONDS:-20}s each =="
  tests/fuzz/run.sh
fi

if [ "${RINGTGT_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== sanitizer build (ASan + UBSan) =="
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRINGTGT_SANITIZE=ON >/dev/null
  ninja -C build-asan
  # The conformance suite and the benchmark smoke run are timing-heavy, the
  # e2e guests (the kernel initiator, node1 under systemd) and the Prometheus
  # checks exercise the same daemon code as the integration tests at several
  # times the cost; the layer rule (a compile check) and the package test
  # (cmake --install and cpack) run no code of ours the sanitizers could
  # watch. The sanitizer pass covers the unit and functional integration
  # tests.
  # The soak's chaos (aborts, resets, dropped connections) is where the
  # sanitizers find most; half its phase length here keeps that, at less cost.
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    SOAK_RUNTIME=${SOAK_RUNTIME:-10} \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure --timeout 1800 \
      -E 'conformance|bench_smoke|e2e|prometheus|layering|test_package' "$@")
fi
