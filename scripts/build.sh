#!/usr/bin/env bash
# Configures and builds TeleRead. Environment:
#   TELEREAD_BUILD_DIR  build directory (default: build)
#   TELEREAD_SANITIZE   ON to build with AddressSanitizer and UBSan (default: OFF)
#   TELEREAD_WERROR     ON to fail on compiler warnings (default: OFF)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${TELEREAD_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTELEREAD_SANITIZE="${TELEREAD_SANITIZE:-OFF}" -DTELEREAD_WERROR="${TELEREAD_WERROR:-OFF}" >/dev/null
cmake --build "$build" -j "$(nproc)"
