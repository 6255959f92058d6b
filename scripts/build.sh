#!/usr/bin/env bash
# Configures and builds TeleRead. Environment:
#   TELEREAD_BUILD_DIR  build directory (default: build)
#   TELEREAD_SANITIZE   ON to build with AddressSanitizer and UBSan (default: OFF)
#   TELEREAD_WERROR     ON to fail on compiler warnings (default: OFF)
#   TELEREAD_FUZZ       ON to add the libFuzzer targets (clang: CC=clang CXX=clang++); with
#                       TELEREAD_SANITIZE the tests are built too, from the same objects (CI)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${TELEREAD_BUILD_DIR:-$root/build}
# -g1 (line tables, enough for stack traces and sanitizer reports) compiles about twice as fast
# as -g on the template-heavy sources.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DTELEREAD_SANITIZE="${TELEREAD_SANITIZE:-OFF}" -DTELEREAD_WERROR="${TELEREAD_WERROR:-OFF}" \
  -DTELEREAD_FUZZ="${TELEREAD_FUZZ:-OFF}" >/dev/null
cmake --build "$build" -j "$(nproc)"
