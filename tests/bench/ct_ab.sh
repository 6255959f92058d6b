#!/usr/bin/env bash
# A/B of two teleread-server builds on durable ingest, alternating A and B
# (ABBA order per pair, so neither always runs after the other), at 4 and 1 associations, with
# storescp (no fsync, no index) once per pair as the yardstick. Per cell: inst/s, the server's CPU
# ms per object (user+sys), the senders' CPU ms per object, the disk's MB written and flushes per
# object (/proc/diskstats), and with BENCH_STRACE=1 (teleread cells only; slows them) a strace -f -T
# summary of the storage calls; the server's context switches and CPU migrations per object (its
# threads' /proc/PID/task/*/sched before and after: nothing attached to the server, and its
# DICOM workers are a fixed pool, so no thread's count is lost with it).
# Usage: tests/bench/ct_ab.sh BUILD_DIR_A BUILD_DIR_B [PAIRS] [COUNT]   (defaults 5; COUNT 600 CT, 2000 small, 1000 public)
# BENCH_KIND: ct (default, ~0.5 MB), small (~9 kB) or public (real-world files, public_corpus.sh; sent with dcmsend).
# BENCH_TLS=1: senders push over DICOM TLS as member ZZ_PACS with its certificate (storescu +tls; ct and
# small only: dcmsend has no TLS), teleread serving TLS on its DICOM port, storescp +tls with the same
# server certificate.
# BENCH_SED_A, BENCH_SED_B: sed expressions applied to A's and B's config.
# BENCH_ASSOCS (default "4 1"), BENCH_NODELAY (default 1; 0: senders leave Nagle on), BENCH_NAGLE_B=1:
# only B's senders leave Nagle on (A and B the same build: the cost of Nagle-on senders).
# Output: one tab-separated line per cell, then medians per (build, assocs). Files: $work.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
kind=${BENCH_KIND:-ct}
declare -A default_count=([ct]=600 [small]=2000 [public]=1000)
[ -n "${default_count[$kind]:-}" ] || { echo "BENCH_KIND is ct, small or public" >&2; exit 2; }
a=$1 b=$2 pairs=${3:-5} count=${4:-${default_count[$kind]}}
work=${TELEREAD_BENCH_DIR:-$root/var/ct_ab}
port=11191
disk=$(lsblk -no PKNAME "$(findmnt -no SOURCE --target "$root")" 2>/dev/null || true)
[ -n "$disk" ] || disk=$(basename "$(findmnt -no SOURCE --target "$root")")
# The previous run's files go first and the disk settles (see ingest.sh: freed inodes on ext4
# without a journal slow file creation for about a minute).
if [ -e "$work" ]; then
  rm -rf "$work"
  sync
  sleep "${BENCH_SETTLE_SECONDS:-61}"
fi
mkdir -p "$work/corpus" "$work/trash"
source "$root/tests/bench/free_space.sh"
sed -e "s/^min_free_disk_mb = .*/min_free_disk_mb = 0/" "$root/config/teleread.toml" |
  awk '/^\[https\]/ { skip = 1 } skip && /^$/ { skip = 0 } !skip' >"$work/teleread.toml"
tls=() storescp_tls=()
if [ "${BENCH_TLS:-0}" = 1 ]; then
  [ "$kind" != public ] || { echo "BENCH_TLS=1 needs BENCH_KIND ct or small (dcmsend has no TLS)" >&2; exit 2; }
  pki=$work/pki
  "$a/server/teleread-server" pki init "$pki" >/dev/null
  "$a/server/teleread-server" pki issue "$pki" --kind server --name teleread-server >/dev/null
  "$a/server/teleread-server" pki issue "$pki" --kind member --name ZZ_PACS --ip 127.0.0.1 >/dev/null
  printf '\n[dicom_tls]\nsame_port = true\ncertificate = "%s"\nkey = "%s"\nca = "%s"\n' \
    "$pki/teleread-server.pem" "$pki/teleread-server.key" "$pki/ca.pem" >>"$work/teleread.toml"
  tls=(+tls "$pki/ZZ_PACS.key" "$pki/ZZ_PACS.pem" -pw +cf "$pki/ca.pem")
  storescp_tls=(+tls "$pki/teleread-server.key" "$pki/teleread-server.pem" -pw +cf "$pki/ca.pem")
fi
# Each build's own config: BENCH_SED_A / BENCH_SED_B (sed expressions) change it, e.g. one
# build with segments and the other without: BENCH_SED_A='s/^segment_mb = .*/segment_mb = 0/'.
sed -e "${BENCH_SED_A:-}" "$work/teleread.toml" >"$work/teleread-A.toml"
sed -e "${BENCH_SED_B:-}" "$work/teleread.toml" >"$work/teleread-B.toml"
if [ "$kind" = public ]; then
  # public_corpus.sh's needs: $build, $work, $port and start_server (build A filters the files).
  build=$a
  start_server() {
    "$build/server/teleread-server" --config "$work/teleread.toml" --storage "$2" --dicom-port $port \
      --log-level warn >"$work/filter.log" 2>&1 &
    local pid=$!
    for _ in $(seq 200); do echoscu -aet ZZ_PACS -aec LX_READ 127.0.0.1 $port >/dev/null 2>&1 && break; sleep 0.05; done
    echo $pid
  }
  source "$root/tests/bench/public_corpus.sh"
  public_corpus "$work/corpus/all" "$count"
else
  mkdir -p "$work/corpus/all"
  "$a/samples/teleread-samples" corpus "$work/corpus/all" --kind "$kind" --count "$count" >/dev/null
fi
for i in 0 1 2 3; do mkdir -p "$work/corpus/part$i"; done
corpus_bytes=$(du -sb "$work/corpus/all" | cut -f1)
n=0
for f in $(find "$work/corpus/all" -name '*.dcm' | sort); do mv "$f" "$work/corpus/part$((n % 4))/"; n=$((n + 1)); done

diskstat() { awk -v d="$disk" '$3 == d { print $10, $19, $20 }' /proc/diskstats; }  # sectors written, flushes, flush ms
cpu_ms() { awk '{ print ($14 + $15 + $16 + $17) * 1000 / '"$(getconf CLK_TCK)"' }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Context switches and CPU migrations summed over the process's threads ("0 0" if it is gone).
switches() {
  local r
  r=$(awk '$1 == "nr_switches" { s += $3 } $1 == "se.nr_migrations" { m += $3 } END { print s + 0, m + 0 }' \
    /proc/"$1"/task/*/sched 2>/dev/null || true)
  echo "${r:-0 0}"
}

# Whatever stops the run (set -e), no server is left running.
running=
trap '[ -z "$running" ] || kill $running 2>/dev/null || true' EXIT

cell() {  # label build_dir assocs -> one result line
  local label=$1 build=$2 assocs=$3 data=$work/data-$RANDOM$RANDOM pid
  require_free_space "$work" $((2 * corpus_bytes + 1000000000))
  # DCMTK reads TCP_NODELAY in every process: storescp as well as the senders.
  local nodelay=${BENCH_NODELAY:-1}
  [ "$label" = B ] && [ "${BENCH_NAGLE_B:-0}" = 1 ] && nodelay=0
  if [ "$nodelay" = 1 ]; then export TCP_NODELAY=1; else unset TCP_NODELAY; fi
  if [ "$label" = storescp ]; then
    mkdir -p "$data"
    storescp --fork +xa --max-pdu 131072 "${storescp_tls[@]}" -od "$data" -aet LX_READ $port >"$work/storescp.log" 2>&1 &
    pid=$!
  elif [ "${BENCH_STRACE:-0}" = 1 ]; then
    strace -f -T -qq -o "$work/strace-$label-$assocs.txt" \
      -e trace=fsync,fdatasync,link,linkat,unlink,sync_file_range,openat,write,pwrite64,read,recvfrom,sendto,writev,pread64,poll,renameat2 \
      "$build/server/teleread-server" --config "$work/teleread-$label.toml" --storage "$data" --dicom-port $port \
      --log-level warn >"$work/$label.log" 2>&1 &
    pid=$!
  else
    "$build/server/teleread-server" --config "$work/teleread-$label.toml" --storage "$data" --dicom-port $port \
      --log-level warn >"$work/$label.log" 2>&1 &
    pid=$!
  fi
  for _ in $(seq 200); do echoscu -aet ZZ_PACS -aec LX_READ "${tls[@]}" 127.0.0.1 $port >/dev/null 2>&1 && break; sleep 0.05; done
  local spid=$pid
  [ "${BENCH_STRACE:-0}" = 1 ] && [ "$label" != storescp ] && spid=$(pgrep -P "$pid" -n teleread-server || echo "$pid")
  running="$pid $spid"
  sync
  local c0 d0 t0 t1 d1 c1 s0= s1= senders=() sender_cpu=0
  c0=$(cpu_ms "$spid")
  d0=$(diskstat)
  [ "$label" = storescp ] || s0=$(switches "$spid")
  t0=$(date +%s%N)
  for i in $(seq 0 $((assocs - 1))); do
    local parts=("$work/corpus/part$i")
    [ "$assocs" -eq 1 ] && parts=("$work"/corpus/part*)
    # dcmsend proposes each file's own transfer syntax (storescu would fail on a JPEG file it cannot convert).
    local sender=(storescu "${tls[@]}")
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
  local switches=0 migrations=0
  if [ -n "$s0" ]; then
    s1=$(switches "$spid")
    switches=$((${s1% *} - ${s0% *}))
    migrations=$((${s1#* } - ${s0#* }))
  fi
  d1=$(diskstat)
  if [ "$label" = storescp ]; then c1=0; c0=0; else c1=$(cpu_ms "$spid"); fi
  for i in $(seq 0 $((assocs - 1))); do
    sender_cpu=$(awk -v s="$sender_cpu" '{ print s + ($1 + $2) * 1000 }' "$work/sender$i.time")
  done
  kill "$spid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  running=
  local stored
  if [ "$label" = storescp ]; then
    stored=$(find "$data" -type f | wc -l)
  else
    stored=$(find "$data" -name '*.dcm' | wc -l)
    # Small objects are kept inside the index (centre.small_object_bytes), larger ones in segments
    # (centre.segment_mb): counted from the index. The server is not
    # always our child (strace): it may still be closing its index.
    for _ in $(seq 100); do kill -0 "$spid" 2>/dev/null || break; sleep 0.05; done
    if [ -f "$data/index.sqlite" ]; then
      stored=$((stored + $(sqlite3 -cmd ".timeout 5000" "$data/index.sqlite" \
        "SELECT (SELECT COUNT(*) FROM object_data) + (SELECT COUNT(*) FROM instances WHERE path GLOB 'segments/*')" \
        2>/dev/null || echo 0)))
    fi
  fi
  [ "$failed" = 0 ] || echo "WARNING: a sender failed ($label x$assocs)" >&2
  mv "$data" "$work/trash/"
  awk -v l="$label" -v a="$assocs" -v n="$count" -v st="$stored" -v ns=$((t1 - t0)) -v c="$((${c1%.*} - ${c0%.*}))" \
    -v sc="$sender_cpu" -v d0="$d0" -v d1="$d1" -v cs="${switches:-0}" -v cm="${migrations:-0}" 'BEGIN {
      split(d0, x, " "); split(d1, y, " "); s = ns / 1e9
      printf "%s\t%d\t%d\t%.0f\t%.2f\t%.3f\t%.2f\t%.2f\t%.2f\t%.1f\t%.2f\t%.2f\n", l, a, st, n / s, s * 1000 / n, c / n, sc / n,
        (y[1] - x[1]) * 512 / 1e6 / n, (y[2] - x[2]) / n, (y[3] - x[3]) / n, cs / n, cm / n }'
}

printf 'build\tassocs\tstored\tinst_s\twall_ms_per_obj\tserver_cpu_ms\tsenders_cpu_ms\tdisk_MB\tflushes\tflush_ms\tctx_sw\tmigrations\n' |
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
  NR > 1 { k = $1 " x" $2; r[k] = r[k] " " $4; c[k] = c[k] " " $6; f[k] = f[k] " " $9; w[k] = w[k] " " $11; row[$1, $2, ++cnt[$1, $2]] = $4; as[$2] = 1 }
  END { for (k in r) printf "%-12s inst/s %5.0f [%s ]  server cpu ms/obj %.3f [%s ]  ctx sw/obj %.2f  flushes/obj %.2f\n", k, med(r[k]), r[k], med(c[k]), c[k], med(w[k]), med(f[k])
    for (x in as) { q = ""; s = ""; t = ""; for (i = 1; i <= cnt["A", x]; i++) { q = q " " row["B", x, i] / row["A", x, i]
        if (row["storescp", x, i] > 0) { s = s " " row["B", x, i] / row["storescp", x, i]; t = t " " row["A", x, i] / row["storescp", x, i] } }
      printf "x%s B/A %.2f [%s ]  A/storescp %.2f [%s ]  B/storescp %.2f [%s ]\n", x, med(q), q, med(t), t, med(s), s } }' "$work/results.tsv" | sort
