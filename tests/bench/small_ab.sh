#!/usr/bin/env bash
# A/B of two teleread-server builds on small objects (durable ingest), alternating A and B
# (ABBA order per pair, so neither always runs after the other), at 4 and 1 associations, with
# storescp (no fsync, no index) once per pair as the yardstick. Per cell: inst/s, the server's CPU
# ms per object (user+sys), the senders' CPU ms per object, the disk's MB written and flushes per
# object (/proc/diskstats), and with BENCH_STRACE=1 (teleread cells only; slows them) a strace -f -T
# summary of the storage calls.
# A copy of ct_ab.sh for the other corpora: BENCH_KIND small (generated 64x64, ~9 kB; default) or
# public (public_corpus.sh: real-world files from Debian packages).
# Usage: tests/bench/small_ab.sh BUILD_DIR_A BUILD_DIR_B [PAIRS] [COUNT]   (defaults 5, 2000)
# BENCH_ASSOCS (default "4 1"), BENCH_NODELAY (default 1; 0: senders leave Nagle on), BENCH_NAGLE_B=1:
# only B's senders leave Nagle on (A and B the same build: the cost of Nagle-on senders).
# Output: one tab-separated line per cell, then medians per (build, assocs). Files: $work.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
a=$1 b=$2 pairs=${3:-5} count=${4:-2000}
kind=${BENCH_KIND:-small}
work=${TELEREAD_BENCH_DIR:-$root/var/small_ab}
port=11192
disk=$(lsblk -no PKNAME "$(findmnt -no SOURCE --target "$root")" 2>/dev/null || true)
[ -n "$disk" ] || disk=$(basename "$(findmnt -no SOURCE --target "$root")")
# The previous run's files go first and the disk settles (see ingest.sh: freed inodes on ext4
# without a journal slow file creation for about a minute).
if [ -e "$work" ]; then
  rm -rf "$work"
  sync
  sleep "${BENCH_SETTLE_SECONDS:-61}"
fi
mkdir -p "$work/corpus/all" "$work/trash"
sed -e "s/^min_free_disk_mb = .*/min_free_disk_mb = 0/" "$root/config/teleread.toml" |
  awk '/^\[https\]/ { skip = 1 } skip && /^$/ { skip = 0 } !skip' >"$work/teleread.toml"
if [ "$kind" = public ]; then
  build=$a
  start_server() {  # as ingest.sh's, teleread only
    "$build/server/teleread-server" --config "$work/teleread.toml" --storage "$2" --dicom-port $port \
      --log-level warn >"$work/$1.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do echoscu -aet ZZ_PACS -aec LX_READ 127.0.0.1 $port >/dev/null 2>&1 && break; sleep 0.05; done
    echo $pid
  }
  source "$root/tests/bench/public_corpus.sh"
  public_corpus "$work/corpus/all" "$count"
else
  "$a/samples/teleread-samples" corpus "$work/corpus/all" --kind "$kind" --count "$count" >/dev/null
fi
for i in 0 1 2 3; do mkdir -p "$work/corpus/part$i"; done
n=0
for f in $(find "$work/corpus/all" -name '*.dcm' | sort); do mv "$f" "$work/corpus/part$((n % 4))/"; n=$((n + 1)); done

diskstat() { awk -v d="$disk" '$3 == d { print $10, $19, $20 }' /proc/diskstats; }  # sectors written, flushes, flush ms
cpu_ms() { awk '{ print ($14 + $15 + $16 + $17) * 1000 / '"$(getconf CLK_TCK)"' }' "/proc/$1/stat"; }

cell() {  # label build_dir assocs -> one result line
  local label=$1 build=$2 assocs=$3 data=$work/data-$RANDOM$RANDOM pid
  # DCMTK reads TCP_NODELAY in every process: storescp as well as the senders.
  local nodelay=${BENCH_NODELAY:-1}
  [ "$label" = B ] && [ "${BENCH_NAGLE_B:-0}" = 1 ] && nodelay=0
  if [ "$nodelay" = 1 ]; then export TCP_NODELAY=1; else unset TCP_NODELAY; fi
  if [ "$label" = storescp ]; then
    mkdir -p "$data"
    storescp --fork +xa --max-pdu 131072 -od "$data" -aet LX_READ $port >"$work/storescp.log" 2>&1 &
    pid=$!
  elif [ "${BENCH_STRACE:-0}" = 1 ]; then
    strace -f -T -qq -o "$work/strace-$label-$assocs.txt" \
      -e trace=fsync,fdatasync,link,linkat,unlink,sync_file_range,openat,write,pwrite64,read,recvfrom,sendto,writev,pread64,poll,renameat2 \
      "$build/server/teleread-server" --config "$work/teleread.toml" --storage "$data" --dicom-port $port \
      --log-level warn >"$work/$label.log" 2>&1 &
    pid=$!
  else
    "$build/server/teleread-server" --config "$work/teleread.toml" --storage "$data" --dicom-port $port \
      --log-level warn >"$work/$label.log" 2>&1 &
    pid=$!
  fi
  for _ in $(seq 200); do echoscu -aet ZZ_PACS -aec LX_READ 127.0.0.1 $port >/dev/null 2>&1 && break; sleep 0.05; done
  local spid=$pid
  [ "${BENCH_STRACE:-0}" = 1 ] && [ "$label" != storescp ] && spid=$(pgrep -P "$pid" -n teleread-server || echo "$pid")
  sync
  local c0 d0 t0 t1 d1 c1 senders=() sender_cpu=0
  c0=$(cpu_ms "$spid")
  d0=$(diskstat)
  t0=$(date +%s%N)
  for i in $(seq 0 $((assocs - 1))); do
    local parts=("$work/corpus/part$i")
    [ "$assocs" -eq 1 ] && parts=("$work"/corpus/part*)
    # The public corpus through dcmsend, as ingest.sh: it proposes each file's own transfer syntax.
    local sender=(storescu)
    [ "$kind" = public ] && sender=(dcmsend -nh -dn)
    /usr/bin/time -f '%U %S' -o "$work/sender$i.time" "${sender[@]}" -aet ZZ_PACS -aec LX_READ --max-pdu 131072 +sd +r \
      127.0.0.1 $port "${parts[@]}" >>"$work/storescu.log" 2>&1 &
    senders+=($!)
  done
  local perf=
  if [ "${BENCH_PERF:-0}" = 1 ] && [ "$label" != storescp ]; then
    perf record -a -g -o "$work/perf-$label-$assocs.data" -- sleep 1 >/dev/null 2>&1 &
    perf=$!
  fi
  local failed=0
  for s in "${senders[@]}"; do wait "$s" || failed=1; done
  t1=$(date +%s%N)
  [ -z "$perf" ] || wait "$perf" || true
  d1=$(diskstat)
  if [ "$label" = storescp ]; then c1=0; c0=0; else c1=$(cpu_ms "$spid"); fi
  for i in $(seq 0 $((assocs - 1))); do
    sender_cpu=$(awk -v s="$sender_cpu" '{ print s + ($1 + $2) * 1000 }' "$work/sender$i.time")
  done
  kill "$spid"
  wait "$pid" 2>/dev/null || true
  local stored
  if [ "$label" = storescp ]; then
    stored=$(find "$data" -type f | wc -l)
  else  # small objects live in the index
    stored=$(sqlite3 "$data/index.sqlite" "SELECT COUNT(*) FROM instances")
  fi
  [ "$failed" = 0 ] || echo "WARNING: a sender failed ($label x$assocs)" >&2
  mv "$data" "$work/trash/"
  awk -v l="$label" -v a="$assocs" -v n="$count" -v st="$stored" -v ns=$((t1 - t0)) -v c="$((${c1%.*} - ${c0%.*}))" \
    -v sc="$sender_cpu" -v d0="$d0" -v d1="$d1" 'BEGIN {
      split(d0, x, " "); split(d1, y, " "); s = ns / 1e9
      printf "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\n", l, a, st, n / s, s * 1000 / n, c / n, sc / n,
        (y[1] - x[1]) * 512 / 1e6 / n, (y[2] - x[2]) / n, (y[3] - x[3]) / n }'
}

printf 'build\tassocs\tstored\tinst_s\twall_ms_per_obj\tserver_cpu_ms\tsenders_cpu_ms\tdisk_MB\tflushes\tflush_ms\n' |
  tee "$work/results.tsv"
for p in $(seq "$pairs"); do
  for assocs in ${BENCH_ASSOCS:-4 1}; do
    order="A B"
    [ $((p % 2)) = 0 ] && order="B A"
    for x in $order; do
      if [ $x = A ]; then cell A "$a" "$assocs"; else cell B "$b" "$assocs"; fi
    done | tee -a "$work/results.tsv"
    [ "${BENCH_STORESCP:-1}" = 1 ] && cell storescp "" "$assocs" | tee -a "$work/results.tsv"
  done
done
echo "medians (raw inst/s in brackets); B/A: median of the per-pair ratios"
awk -F'\t' 'function med(list,   v, n, i, j, t) { n = split(list, v, " ")
    for (i = 2; i <= n; i++) { t = v[i] + 0; for (j = i - 1; j > 0 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
  NR > 1 { k = $1 " x" $2; r[k] = r[k] " " $4; c[k] = c[k] " " $6; f[k] = f[k] " " $9; row[$1, $2, ++cnt[$1, $2]] = $4; as[$2] = 1 }
  END { for (k in r) printf "%-12s inst/s %5.0f [%s ]  server cpu ms/obj %.2f  flushes/obj %.2f\n", k, med(r[k]), r[k], med(c[k]), med(f[k])
    for (x in as) { q = ""; s = ""; for (i = 1; i <= cnt["A", x]; i++) { q = q " " row["B", x, i] / row["A", x, i]
        if (row["storescp", x, i] > 0) s = s " " row["B", x, i] / row["storescp", x, i] }
      printf "x%s B/A %.2f [%s ]  B/storescp %.2f\n", x, med(q), q, med(s) } }' "$work/results.tsv" | sort
