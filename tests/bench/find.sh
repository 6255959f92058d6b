#!/usr/bin/env bash
# C-FIND latency benchmark: p50/p99 at STUDY level for PatientID exact, PatientName wildcard,
# StudyDate range and all studies, on
#   - teleread-server and Orthanc (Debian package, default SQLite index, Nagle off, StorageAccessOnFind
#     Never) loaded with the same SMALL studies by storescu, in the same run;
#   - teleread-server on a generated index of BIG studies x 10 instances.
# Usage: tests/bench/find.sh [SMALL] [BIG]    (defaults 20000 and 100000; installs orthanc as root)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TELEREAD_BUILD_DIR:-$root/build}
work=${TELEREAD_BENCH_DIR:-$root/var/bench-find}
small=${1:-20000}
big=${2:-100000}
tr_port=11292
or_port=11293
source "$root/tests/bench/orthanc.sh"
export TCP_NODELAY=1

rm -rf "$work"
mkdir -p "$work"
corpus=$build/tests/bench/teleread-bench-corpus
latency=$build/tests/bench/teleread-find-latency

start_teleread() {  # storage -> pid
  # Without the [https] table: this benchmark needs no reading API and no certificates.
  sed -e "s/^min_free_disk_mb = .*/min_free_disk_mb = 0/" -e '/^\[https\]/,/^max_body_mb/d' "$root/config/teleread.toml" \
    >"$work/teleread.toml"
  # The benchmark queries as the centre workstation, plain: allowed from loopback only.
  printf '\n[[centre.plain_callers]]\nae_title = "LX_WS1"\naddresses = ["127.0.0.1"]\n' >>"$work/teleread.toml"
  "$build/server/teleread-server" --config "$work/teleread.toml" --storage "$1" --dicom-port $tr_port \
    --log-level warn >>"$work/teleread.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    echoscu -aet LX_WS1 -aec LX_READ 127.0.0.1 $tr_port >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo $pid
}

queries() {  # label port aec
  local label=$1 port=$2 aec=$3
  while read -r name value repeat; do
    printf '%-22s ' "$label"
    [ "$value" = - ] && value=
    "$latency" --port "$port" --aet LX_WS1 --aec "$aec" --query "$name" ${value:+--value "$value"} \
      --repeat "$repeat" --warmup 2
  done <<EOF2
patient-id P0012345 200
name-wildcard ZHANG^WEI1234* 200
date-range 20200101-20200102 200
all - 10
EOF2
}

echo "== $small one-instance studies, teleread-server and Orthanc" >&2
"$corpus" files "$work/studies" --studies "$small" >&2
pid=$(start_teleread "$work/teleread-small")
for p in 0 1 2 3; do
  ae=(ZZ_PACS LS_PACS YX_PACS ZZ_PACS)
  storescu -aet "${ae[$p]}" -aec LX_READ +sd +r 127.0.0.1 $tr_port "$work/studies/part$p" >>"$work/storescu.log" 2>&1 &
done
wait -n; wait -n; wait -n; wait -n
queries "teleread $small" $tr_port LX_READ | tee "$work/results.txt"
kill "$pid"; wait "$pid" 2>/dev/null || true

orthanc_install >&2
opid=$(orthanc_start "$work/orthanc" $or_port 18293)
echo "orthanc load: $(orthanc_load "$work/studies" $or_port) s" >&2
queries "orthanc $small" $or_port ORTHANC | tee -a "$work/results.txt"
orthanc_stop "$opid"

echo "== $big studies x 10 instances, generated index" >&2
"$corpus" index "$work/teleread-big" --studies "$big" --instances 10 >&2
pid=$(start_teleread "$work/teleread-big")
queries "teleread $big" $tr_port LX_READ | tee -a "$work/results.txt"
kill "$pid"; wait "$pid" 2>/dev/null || true
echo "== query plans at $big studies"
"$corpus" explain "$work/teleread-big"
