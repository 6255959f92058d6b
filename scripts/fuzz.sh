#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -DTELEREAD_FUZZ=ON) and runs each on a scratch copy of its
# seed corpus; fails when a target crashes, leaks or times out. See docs/fuzzing.md. Environment:
#   TELEREAD_FUZZ_BUILD_DIR  build directory (default: build-fuzz)
#   TELEREAD_FUZZ_SECONDS    seconds per target (default: 20)
#   TELEREAD_FUZZ_TARGETS    targets to run (default: all five)
#   TELEREAD_FUZZ_JOBS       parallel fuzzing processes per target (default: 1)
#   TELEREAD_FUZZ_OUT        where crashes and the grown corpora go (default: BUILD/fuzz-out)
# Extra arguments go to every libFuzzer run (e.g. -max_len=65536).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${TELEREAD_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${TELEREAD_FUZZ_SECONDS:-20}
jobs=${TELEREAD_FUZZ_JOBS:-1}
targets=${TELEREAD_FUZZ_TARGETS:-fuzz_dataset_summary fuzz_charset fuzz_report fuzz_http_request fuzz_query_identifier}
out=${TELEREAD_FUZZ_OUT:-$build/fuzz-out}

"$root/scripts/install-deps.sh"
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DTELEREAD_FUZZ=ON \
  -DTELEREAD_WERROR="${TELEREAD_WERROR:-OFF}" >/dev/null
cmake --build "$build" -j "$(nproc)" --target fuzz

# SQLite's fsyncs cost nothing on tmpfs, so the HTTP target runs at the speed of its code.
if [ -z "${TMPDIR:-}" ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for target in $targets; do
  work="$out/$target"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/crashes"
  cp "$root/tests/fuzz/corpus/$target/"* "$work/corpus/"
  if [ -d "$root/tests/fuzz/regressions/$target" ]; then cp "$root/tests/fuzz/regressions/$target/"* "$work/corpus/"; fi
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$work/crashes/" -dict="$root/tests/fuzz/dict/$target.dict")
  if [ "$jobs" -gt 1 ]; then args+=(-fork="$jobs"); fi
  echo "fuzz: $target for ${seconds}s (log: $work/log)"
  if ! (cd "$work" && "$build/tests/fuzz/$target" "${args[@]}" "$@" corpus >log 2>&1); then
    failed+=("$target")
    tail -n 60 "$work/log" >&2
  fi
  # With -fork there are no stat:: lines: the last progress line instead (an empty grep must not end the script).
  { grep -E '^(stat::|#[0-9]+[[:space:]]+DONE)' "$work/log" || grep -E '^#[0-9]+: cov' "$work/log" | tail -n 1 || true; } |
    tr -s ' \t\n' ' '
  echo
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}; the inputs are in $out/<target>/crashes/" >&2
  exit 1
fi
echo "fuzz: no crash in ${seconds}s per target"
