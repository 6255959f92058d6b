#!/usr/bin/env bash
# Installs the dependencies, builds, and runs the whole test suite through ctest.
# Same environment as scripts/build.sh; extra arguments go to ctest (e.g. -R listener).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"
build=${TELEREAD_BUILD_DIR:-$root/build}
cd "$build"
# Most tests wait on servers and timers: one more at a time than cores keeps both busy.
ctest --output-on-failure --timeout 600 -j "$(($(nproc) + 1))" "$@"
