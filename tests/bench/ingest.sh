#!/usr/bin/env bash
# Ingest benchmark: teleread-server (durable: fsync + SQLite index) against DCMTK storescp
# (writes files, no fsync, no index) and Orthanc (Debian package, default SQLite index), same
# corpora, same run, 1 and 4 associations, senders calling as the member ZZ_PACS; teleread also
# with senders that leave Nagle on (Debian DCMTK's default, "teleread-nagle").
# storescp --ignore (network and DIMSE only, nothing written) shows the floor.
# Usage: tests/bench/ingest.sh [CT_COUNT] [SMALL_COUNT] [PUBLIC_COUNT]     (defaults 400, 4000, 1000)
# BENCH_SERVERS chooses the receivers (default "storescp-ignore storescp teleread orthanc"; with
# teleread, also its Nagle-on senders and one ~1 GB object unless BENCH_NAGLE=0 / BENCH_LARGE=0),
# BENCH_KINDS the corpora (default "ct small public": public = real-world files, public_corpus.sh), BENCH_REPS how many passes over every cell (default
# 3): the passes interleave, so a slow minute of the shared disk lands on every receiver alike, and
# each ratio is the median of the per-pass ratios (their spread printed beside it).
# Needs a build (scripts/build.sh). Results: a table on stdout and var/bench/results.tsv.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TELEREAD_BUILD_DIR:-$root/build}
work=${TELEREAD_BENCH_DIR:-$root/var/bench}
ct_count=${1:-400}
small_count=${2:-4000}
public_count=${3:-1000}
kinds=${BENCH_KINDS:-ct small public}
port=11190
source "$root/tests/bench/orthanc.sh"
source "$root/tests/bench/public_corpus.sh"
source "$root/tests/bench/free_space.sh"
export TCP_NODELAY=1  # the DCMTK peers' best setting (Debian's DCMTK leaves Nagle on)

# ext4 without a journal (this machine's root) passes over every inode freed in the last minute when it
# allocates one, reading each one's inode table block: storescp creating files soon after a mass deletion
# ran at a quarter of its speed (small x1 1,120 against 5,510 inst/s). So the previous run's files go
# first and a minute passes; this run's stay until the next run.
if [ -e "$work" ]; then
  rm -rf "$work"
  sync
  settle=${BENCH_SETTLE_SECONDS:-61}
  echo "waiting ${settle} s after deleting the previous run's files (freed inodes slow file creation)" >&2
  sleep "$settle"
fi
mkdir -p "$work/trash"
corpus() {  # kind count -> $work/corpus-kind/part{0..3}
  local dir=$work/corpus-$1
  if [ "$1" = public ]; then
    public_corpus "$dir/all" "$2"
  else
    "$build/samples/teleread-samples" corpus "$dir/all" --kind "$1" --count "$2" >/dev/null
  fi
  for i in 0 1 2 3; do mkdir -p "$dir/part$i"; done
  local n=0
  for f in $(find "$dir/all" -name '*.dcm' | sort); do
    mv "$f" "$dir/part$((n % 4))/"
    n=$((n + 1))
  done
  du -sb "$dir" | cut -f1
}

start_server() {  # which data_dir -> pid on stdout
  case $1 in
    teleread)
      # Without the [https] table (every line up to the next blank one): DICOM only.
      sed -e "s/^min_free_disk_mb = .*/min_free_disk_mb = 0/" "$root/config/teleread.toml" |
        awk '/^\[https\]/ { skip = 1 } skip && /^$/ { skip = 0 } !skip' >"$work/teleread.toml"
      "$build/server/teleread-server" --config "$work/teleread.toml" --storage "$2" --dicom-port $port \
        --log-level warn >"$work/$1.log" 2>&1 &
      ;;
    storescp | storescp-ignore)
      mkdir -p "$2"
      local ignore=()
      [ "$1" = storescp-ignore ] && ignore=(--ignore)
      # --fork: one process per association, its only way to serve several at once.
      # +xa: every transfer syntax, as the others (the public corpus has JPEG, RLE, deflated objects).
      storescp --fork +xa "${ignore[@]}" --max-pdu 131072 -od "$2" -aet LX_READ $port >"$work/$1.log" 2>&1 &
      ;;
    orthanc)
      orthanc_start "$2" $port 18190
      return
      ;;
  esac
  local pid=$!
  for _ in $(seq 100); do
    echoscu -aet ZZ_PACS -aec LX_READ 127.0.0.1 $port >/dev/null 2>&1 && break
    sleep 0.05
  done
  echo $pid
}

peak_rss_kb() {  # pid and its children (storescp --fork)
  local total=0
  for p in $1 $(pgrep -P "$1" || true); do
    local hwm
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    [ "${hwm:-0}" -gt "$total" ] && total=$hwm
  done
  echo "$total"
}

declare -A bytes count=([ct]=$ct_count [small]=$small_count [public]=$public_count)
echo "generating corpora ($kinds): $ct_count CT (~0.5 MB), $small_count small (~10 kB), $public_count public" >&2
for kind in $kinds; do bytes[$kind]=$(corpus "$kind" "${count[$kind]}"); done

printf 'server\tcorpus\tassocs\tinstances\tseconds\tinst_per_s\tMB_per_s\tpeak_rss_MB\tpass\n' >"$work/results.tsv"
run() {  # which kind assocs [nagle]
  local data=$work/data-$1-$2-$3-$pass
  require_free_space "$work" $((2 * bytes[$2] + 1000000000))
  local pid
  pid=$(start_server "$1" "$data")
  local label=$1 nodelay=1
  [ "${4:-}" = nagle ] && label=$1-nagle nodelay=0
  local rss_max=0
  local t0 t1
  sync  # the previous cell's (or the corpus's) dirty pages are not flushed during this one
  t0=$(date +%s%N)
  local senders=()
  for i in $(seq 0 $(($3 - 1))); do
    local parts=()
    if [ "$3" -eq 1 ]; then parts=("$work/corpus-$2"/part*); else parts=("$work/corpus-$2/part$i"); fi
    # The public corpus through dcmsend: it proposes each file's own transfer syntax (storescu would
    # offer uncompressed ones and fail on a JPEG file it cannot convert).
    local sender=(storescu)
    [ "$2" = public ] && sender=(dcmsend -nh -dn)
    if [ $nodelay = 1 ]; then
      "${sender[@]}" -aet ZZ_PACS -aec LX_READ --max-pdu 131072 +sd +r 127.0.0.1 $port "${parts[@]}" \
        >>"$work/storescu.log" 2>&1 &
    else
      env -u TCP_NODELAY "${sender[@]}" -aet ZZ_PACS -aec LX_READ --max-pdu 131072 +sd +r 127.0.0.1 $port "${parts[@]}" \
        >>"$work/storescu.log" 2>&1 &
    fi
    senders+=($!)
  done
  # Children of storescp --fork exit with their association: sample their RSS while running.
  while kill -0 "${senders[@]}" 2>/dev/null; do
    local r
    r=$(peak_rss_kb "$pid")
    [ "$r" -gt "$rss_max" ] && rss_max=$r
    sleep 0.05
  done
  local failed=0
  for s in "${senders[@]}"; do wait "$s" || failed=1; done
  t1=$(date +%s%N)
  local r
  r=$(peak_rss_kb "$pid")
  [ "$r" -gt "$rss_max" ] && rss_max=$r
  local stored
  if [ "$1" = orthanc ]; then
    orthanc_stop "$pid"
    stored=$(find "$data/storage" -type f | wc -l)
  else
    kill "$pid" 2>/dev/null || { echo "$1 stopped by itself; see $work/$1.log:" >&2; tail -3 "$work/$1.log" >&2; exit 1; }
    wait "$pid" 2>/dev/null || true
    if [ "$1" = teleread ]; then
      stored=$(find "$data/objects" -name '*.dcm' 2>/dev/null | wc -l)
    else  # storescp: nothing but the objects, named after their modality
      stored=$(find "$data" -type f | wc -l)
    fi
    # teleread keeps small objects inside its index (centre.small_object_bytes) and larger ones in
    # segments (centre.segment_mb), both counted from the index.
    # (The server is not our child, so `wait` returned at once: it may still be closing its index.)
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if [ -f "$data/index.sqlite" ]; then
      stored=$((stored + $(sqlite3 -cmd ".timeout 5000" "$data/index.sqlite" \
        "SELECT (SELECT COUNT(*) FROM object_data) + (SELECT COUNT(*) FROM instances WHERE path GLOB 'segments/*')" \
        2>/dev/null || echo 0)))
    fi
  fi
  [ "$failed" -eq 0 ] || echo "WARNING: a sender failed ($1 $2 $3)" >&2
  awk -v s="$label" -v c="$2" -v a="$3" -v n="${count[$2]}" -v st="$stored" -v ns=$((t1 - t0)) -v b="${bytes[$2]}" \
    -v rss="$rss_max" -v p="$pass" 'BEGIN {
      sec = ns / 1e9
      printf "%s\t%s\t%d\t%d\t%.2f\t%.0f\t%.1f\t%.1f\t%d\n", s, c, a, st, sec, n / sec, b / sec / 1e6, rss / 1024, p }' \
    >>"$work/results.tsv"
  # Kept until the next run (see the top): a deletion now would slow whichever receiver ran next.
  mv "$data" "$(mktemp -d "$work/trash/XXXXXX")/"
}

servers=${BENCH_SERVERS:-storescp-ignore storescp teleread orthanc}
case " $servers " in *" orthanc "*) orthanc_install >&2 ;; esac
reps=${BENCH_REPS:-3}
# Each pass rotates the order: a cell runs slower after one that left the disk busy (teleread after
# storescp's unsynced files ran ~1.7x slower than after Orthanc, whichever sender it had).
# teleread's Nagle-on cell and the 1 GB object only where teleread is measured (BENCH_NAGLE=0,
# BENCH_LARGE=0 leave them out).
with_teleread=0
case " $servers " in *" teleread "*) with_teleread=1 ;; esac
nagle_cell=
[ $with_teleread = 1 ] && [ "${BENCH_NAGLE:-1}" = 1 ] && nagle_cell=teleread-nagle
read -r -a cells <<<"$servers $nagle_cell"
for pass in $(seq "$reps"); do
  for kind in $kinds; do
    for assocs in 1 4; do
      for i in $(seq 0 $((${#cells[@]} - 1))); do
        cell=${cells[$(((i + pass - 1) % ${#cells[@]}))]}
        echo "pass $pass/$reps: running $cell $kind x$assocs" >&2
        if [ "$cell" = teleread-nagle ]; then run teleread $kind $assocs nagle; else run "$cell" $kind $assocs; fi
      done
    done
  done
done
# One ~1 GB object: the server streams it to disk, so its RSS must stay far below the object's size.
large_ok=skipped large_rss=0 large_bytes=0
if [ $with_teleread = 1 ] && [ "${BENCH_LARGE:-1}" = 1 ]; then
  echo "running teleread with one ~1 GB object" >&2
  require_free_space "$work" 3000000000  # the object, and the server's copy
  "$build/samples/teleread-samples" corpus "$work/corpus-large" --kind large --count 1 >/dev/null
  large_pid=$(start_server teleread "$work/data-large")
  storescu -aet ZZ_PACS -aec LX_READ --max-pdu 131072 +sd +r 127.0.0.1 $port "$work/corpus-large" \
    >>"$work/storescu.log" 2>&1 &
  sender=$!
  large_rss=0
  while kill -0 $sender 2>/dev/null; do
    r=$(peak_rss_kb "$large_pid")
    [ "$r" -gt "$large_rss" ] && large_rss=$r
    sleep 0.1
  done
  wait $sender && large_ok=stored || large_ok=FAILED
  kill "$large_pid"
  wait "$large_pid" 2>/dev/null || true
  large_bytes=$(du -sb "$work/corpus-large" | cut -f1)
  rm -rf "$work/data-large" "$work/corpus-large"  # a few inodes; $work/trash stays (above)
fi

# The disk's floor for one durable write, on the file system the receivers wrote to.
ct_object=
case " $kinds " in *" ct "*) ct_object=obj=$((bytes[ct] / count[ct])) ;; esac
require_free_space "$work" 300000000  # its 256 MiB file
# A failure here leaves the tables above it to print, without the floor lines.
"$build/tests/bench/teleread-disk-floor" "$work" 1 3 10 27 $ct_object >"$work/disk_floor.tsv" ||
  echo "teleread-disk-floor failed: no floor figures" >&2
sync_ms=$(awk -F'\t' '$1 == 1 {print $2}' "$work/disk_floor.tsv")

# Medians over the passes: mawk has no sort, hence the insertion sort.
stats='function med(list,   v, n, i, j, t) { n = split(list, v, " ")
    for (i = 2; i <= n; i++) { t = v[i] + 0; for (j = i - 1; j > 0 && v[j] + 0 > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return n == 0 ? 0 : (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2) }
  function lo(list,   v, n, i, m) { n = split(list, v, " "); m = v[1] + 0; for (i = 2; i <= n; i++) if (v[i] + 0 < m) m = v[i] + 0; return m }
  function hi(list,   v, n, i, m) { n = split(list, v, " "); m = v[1] + 0; for (i = 2; i <= n; i++) if (v[i] + 0 > m) m = v[i] + 0; return m }'
awk -F'\t' "$stats"'
  NR > 1 { k = $1 "\t" $2 "\t" $3; if (!(k in rate)) order[++n] = k
    rate[k] = rate[k] " " $6; mbs[k] = mbs[k] " " $7; if ($8 > rss[k]) rss[k] = $8; inst[k] = inst[k] " " $4 }
  END { print "server\tcorpus\tassocs\tinstances\tinst_per_s (median)\tmin-max\tMB_per_s\tpeak_rss_MB"
    for (i = 1; i <= n; i++) { k = order[i]
      printf "%s\t%d\t%.0f\t%.0f-%.0f\t%.1f\t%.1f\n", k, lo(inst[k]), med(rate[k]), lo(rate[k]), hi(rate[k]), med(mbs[k]), rss[k] } }' \
  "$work/results.tsv" | column -t -s $'\t'
printf '\nlarge object: %.0f MB %s; teleread-server peak RSS %.1f MB\n' "$(awk -v b="$large_bytes" 'BEGIN {print b / 1e6}')" \
  "$large_ok" "$(awk -v k="$large_rss" 'BEGIN {print k / 1024}')"
echo
echo "ratios: median of the $reps passes' own ratios [lowest, highest]"
awk -F'\t' "$stats"'
  function q(a, b, k,   p, out) { out = ""
    for (p = 1; p <= passes; p++) if (r[b, k, p] > 0) out = out " " r[a, k, p] / r[b, k, p]
    return out }
  function show(list) { return list == "" ? "-" : sprintf("%.2f [%.2f, %.2f]", med(list), lo(list), hi(list)) }
  NR > 1 { key = $2 " x" $3; r[$1, key, $9] = $6; keys[key] = 1; if ($9 > passes) passes = $9 }
  END {
    for (k in keys) {
      printf "%-9s teleread/storescp %s  /storescp-ignore %s  /orthanc %s  nagle-on/off senders %s\n",
        k, show(q("teleread", "storescp", k)), show(q("teleread", "storescp-ignore", k)), show(q("teleread", "orthanc", k)),
        show(q("teleread-nagle", "teleread", k))
    }
    for (c in keys) if (c ~ / x1$/) { sub(/ x1$/, "", c)
      t = ""; s = ""
      for (p = 1; p <= passes; p++) {
        if (r["teleread", c " x1", p] > 0) t = t " " r["teleread", c " x4", p] / r["teleread", c " x1", p]
        if (r["storescp", c " x1", p] > 0) s = s " " r["storescp", c " x4", p] / r["storescp", c " x1", p]
      }
      printf "%-9s teleread 4 assocs / 1 assoc %s (storescp %s)\n", c, show(t), show(s) }
  }' "$work/results.tsv" | sort
echo
echo "disk (teleread-disk-floor): 4 KiB pages written in place + fdatasync, ms; object_BYTES: one object"
echo "written with O_DIRECT + fdatasync, ms; stream_MB_per_s: one writer's O_DIRECT streaming, durable, MB/s"
column -t -s $'\t' "$work/disk_floor.tsv"
# One association waits for each answer: a receiver that syncs once per object needs at least the
# network floor (storescp --ignore) plus one durable write per object (a page: small objects only).
awk -F'\t' -v sync="$sync_ms" "$stats"'
  NR > 1 && $3 == 1 && $2 == "small" { r[$1, $2, $9] = $6; c[$2] = 1; if ($9 > passes) passes = $9 }
  END { for (k in c) { b = ""; f = ""
      for (p = 1; p <= passes; p++) if (r["storescp-ignore", k, p] > 0 && r["storescp", k, p] > 0) {
        best = 1 / (1 / r["storescp-ignore", k, p] + sync / 1000); b = b " " best; f = f " " best / r["storescp", k, p] }
      if (b != "") printf "%-9s 1 assoc: best a once-per-object durable receiver can reach %.0f inst/s = %.2f [%.2f, %.2f] of storescp\n",
        k, med(b), med(f), lo(f), hi(f) } }' "$work/results.tsv" | sort
# CT: network (storescp --ignore) and disk (one writer's durable streaming rate, a lower estimate
# of the disk) bound a receiver that acknowledges after durability; at one association one flush
# per object follows the last byte at best (the writes overlapping the reception perfectly), so the
# bound there is the slower of the two plus a flush.
stream=$(awk -F'\t' '$1 == "stream_MB_per_s" {print $2}' "$work/disk_floor.tsv")
if [ -n "$stream" ] && [ -n "$ct_object" ]; then
  awk -F'\t' -v sync="$sync_ms" -v mbps="$stream" -v mb="$(awk -v o="${ct_object#obj=}" 'BEGIN { print o / 1e6 }')" "$stats"'
    NR > 1 && $2 == "ct" { r[$1, $3, $9] = $6; if ($9 > passes) passes = $9 }
    END { cap = mbps / mb
      for (a = 1; a <= 4; a *= 4) { b = ""; f = ""
        for (p = 1; p <= passes; p++) if (r["storescp-ignore", a, p] > 0 && r["storescp", a, p] > 0) {
          net = 1 / r["storescp-ignore", a, p]; disk = 1 / cap
          best = a == 1 ? 1 / ((net > disk ? net : disk) + sync / 1000) : 1 / (net > disk ? net : disk)
          b = b " " best; f = f " " best / r["storescp", a, p] }
        if (b != "") printf "ct        %d assoc%s: network floor and disk (%.0f MB/s, one writer)%s: at most %.0f inst/s = %.2f [%.2f, %.2f] of storescp\n",
          a, (a > 1 ? "s" : " "), mbps, (a == 1 ? " plus a flush per object" : ""), med(b), med(f), lo(f), hi(f) } }' "$work/results.tsv"
fi
