#!/usr/bin/env bash
# Every benchmark in one command (~25 minutes on two cores): ingest against storescp with the
# issue's corpora (600 CT, 2,000 small; storescp's files stay in the page cache either way, but
# its rate fell as a cell grew: 509 inst/s on 300 CT, 379 on 1,000, where teleread's was 335 and
# 364), plain and over DICOM TLS (a member with its certificate), C-FIND as a member against Orthanc at the issue's scale (20,000 studies, and 100,000 for
# TeleRead alone; FIND_SMALL/FIND_BIG to change; tuned, Nagle-on and findscu clients),
# and the reading API under 32 clients while a member pushes. Each prints its own ratios against
# the peer measured in the same run. Larger runs: call the scripts themselves (see their usage).
# Usage: tests/bench/all.sh            Environment: TELEREAD_BUILD_DIR, as for the scripts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
echo "### ingest (teleread-server vs storescp)"
"$here/ingest.sh" "${INGEST_CT:-600}" "${INGEST_SMALL:-2000}" "${INGEST_PUBLIC:-1000}"
echo
echo "### ingest over DICOM TLS (member ZZ_PACS with its certificate; teleread-server vs storescp +tls)"
# ct_ab.sh with the same build as A and B: two passes of it and one of storescp (B/A compares the
# build with itself: a measure of the noise).
build=${TELEREAD_BUILD_DIR:-$here/../../build}
for kind in small ct; do
  count=${INGEST_SMALL:-2000}
  [ "$kind" = ct ] && count=${INGEST_CT:-600}
  BENCH_TLS=1 BENCH_KIND=$kind BENCH_SETTLE_SECONDS=${BENCH_SETTLE_SECONDS:-3} \
    TELEREAD_BENCH_DIR=${TELEREAD_BENCH_DIR:-$here/../../var}/ingest_tls \
    "$here/ct_ab.sh" "$build" "$build" 1 "$count" | sed -n '/^medians/,$p'
done
echo
echo "### C-FIND (teleread-server as member and centre vs Orthanc)"
"$here/find.sh" "${FIND_SMALL:-20000}" "${FIND_BIG:-100000}"
echo
echo "### reading API (32 mutual-TLS keep-alive clients, a member pushing)"
"$here/api_load.sh" "${API_TASKS:-10000}" "${API_CLIENTS:-32}" "${API_REQUESTS:-20}"
