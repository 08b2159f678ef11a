#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan + coverage) in build-fuzz
# and runs each for a bounded time on a copy of its checked-in seed corpus.
# A crash, leak, sanitizer report or time-out fails it, and the input that
# did it is kept in build-fuzz/artifacts/.
#   FUZZ_SECONDS  per target (default 20)
#   FUZZ_TARGETS  which ones (default: all three)
set -euo pipefail
cd "$(dirname "$0")/../.."
src=$PWD
build=${FUZZ_BUILD_DIR:-build-fuzz}
seconds=${FUZZ_SECONDS:-20}
targets=${FUZZ_TARGETS:-"fuzz_connection fuzz_login_keys fuzz_cdb"}

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DRINGTGT_FUZZ=ON -DRINGTGT_BUILD_TESTS=OFF "${launcher[@]}" >/dev/null
# shellcheck disable=SC2086
ninja -C "$build" $targets

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/artifacts"
failed=()
for t in $targets; do
  mkdir -p "$work/$t"
  cp "$src/tests/fuzz/corpus/$t/"* "$work/$t/"
  echo "== $t: ${seconds}s from $(ls "$work/$t" | wc -l) seeds =="
  if ! ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
       UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
       "$build/tests/fuzz/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
         -max_len=70000 -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
         "$work/$t" >"$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log"
    failed+=("$t")
  else
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$work/$t.log" || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
echo "fuzz: all targets ran ${seconds}s without a finding"
