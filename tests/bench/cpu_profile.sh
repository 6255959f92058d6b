#!/usr/bin/env bash
# Server CPU per object, and where it goes: one push of generated objects (PROFILE_KIND: small, ~9 kB, or ct) at
# ASSOCS associations, the server's user+sys CPU per object from /proc, and with PERF=1 a perf
# profile (DWARF call graphs) split into components by tests/bench/perf_components.py (the perf
# run's own CPU per object is inflated by perf; scale its shares by a run without it).
# Usage: tests/bench/cpu_profile.sh BUILD_DIR OUT_PREFIX [ASSOCS] [COUNT]   (defaults 4, 8000)
# Environment: PERF=1 to profile. Files: $TELEREAD_BENCH_DIR (default var/cpu_profile).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$1 out=$2 assocs=${3:-4} count=${4:-8000}
work=${TELEREAD_BENCH_DIR:-$root/var/cpu_profile}
port=11193
mkdir -p "$work"
# As ingest.sh: the previous run's objects are deleted first and a minute passes (ext4 without a
# journal searches past every inode freed in the last minute when it allocates one: 9 % of a CT
# profile's samples when the data of a run 10 s earlier had just been deleted).
if [ -n "$(ls -A "$work/trash" 2>/dev/null)" ]; then
  rm -rf "$work/trash"
  sync
  settle=${BENCH_SETTLE_SECONDS:-61}
  echo "waiting ${settle} s after deleting the previous run's objects (freed inodes slow file creation)" >&2
  sleep "$settle"
fi
mkdir -p "$work/trash"
if [ ! -d "$work/corpus-${PROFILE_KIND:-small}-$count/part0" ]; then
  mkdir -p "$work/corpus-${PROFILE_KIND:-small}-$count/all"
  "$build/samples/teleread-samples" corpus "$work/corpus-${PROFILE_KIND:-small}-$count/all" --kind "${PROFILE_KIND:-small}" --count "$count" >/dev/null
  for i in 0 1 2 3; do mkdir -p "$work/corpus-${PROFILE_KIND:-small}-$count/part$i"; done
  n=0
  for f in $(find "$work/corpus-${PROFILE_KIND:-small}-$count/all" -name '*.dcm' | sort); do
    mv "$f" "$work/corpus-${PROFILE_KIND:-small}-$count/part$((n % 4))/"
    n=$((n + 1))
  done
fi
sed -e "s/^min_free_disk_mb = .*/min_free_disk_mb = 0/" "$root/config/teleread.toml" |
  awk '/^\[https\]/ { skip = 1 } skip && /^$/ { skip = 0 } !skip' >"$work/teleread.toml"
data=$work/data-$RANDOM$RANDOM
export TCP_NODELAY=1
"$build/server/teleread-server" --config "$work/teleread.toml" --storage "$data" --dicom-port $port \
  --log-level warn >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 200); do echoscu -aet ZZ_PACS -aec LX_READ 127.0.0.1 $port >/dev/null 2>&1 && break; sleep 0.05; done
cpu_ms() { awk '{ print ($14 + $15) * 1000 / '"$(getconf CLK_TCK)"' }' "/proc/$1/stat"; }
c0=$(cpu_ms $pid)
t0=$(date +%s%N)
perf_pid=
if [ "${PERF:-0}" = 1 ]; then
  perf record -F 1000 --call-graph dwarf,32768 -p $pid -o "$out.perf.data" >/dev/null 2>&1 &
  perf_pid=$!
fi
senders=()
for i in $(seq 0 $((assocs - 1))); do
  parts=("$work/corpus-${PROFILE_KIND:-small}-$count/part$i")
  [ "$assocs" = 1 ] && parts=("$work/corpus-${PROFILE_KIND:-small}-$count"/part*)
  storescu -aet ZZ_PACS -aec LX_READ --max-pdu 131072 +sd +r 127.0.0.1 $port "${parts[@]}" >/dev/null 2>&1 &
  senders+=($!)
done
for s in "${senders[@]}"; do wait "$s"; done
t1=$(date +%s%N)
c1=$(cpu_ms $pid)
if [ -n "$perf_pid" ]; then
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
fi
n=$(sqlite3 "$data/index.sqlite" "SELECT COUNT(*) FROM instances")
kill $pid
wait $pid 2>/dev/null || true
mv "$data" "$work/trash/"  # deleted by the next run, before its settle
awk -v n="$n" -v c0="$c0" -v c1="$c1" -v ns=$((t1 - t0)) \
  'BEGIN { printf "stored %d inst/s %.0f server cpu us/obj (user+sys) %.0f\n", n, n / (ns / 1e9), (c1 - c0) * 1000 / n }'
if [ -n "$perf_pid" ]; then
  python3 "$root/tests/bench/perf_components.py" "$out.perf.data" "$(awk -v c0="$c0" -v c1="$c1" -v n="$n" 'BEGIN { print (c1 - c0) * 1000 / n }')"
fi
