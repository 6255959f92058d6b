#!/usr/bin/env bash
# C-FIND latency benchmark, queried as users query: p50/p99 at STUDY level for PatientID,
# AccessionNumber, a PatientName prefix, a StudyInstanceUID, a StudyDate range and all studies, on
#   - teleread-server and Orthanc (Debian package, default SQLite index, StorageAccessOnFind Never)
#     loaded with the same SMALL studies by storescu, in the same run;
#   - teleread-server on a generated index of BIG studies x 10 instances.
# TeleRead is queried as the member AE ZZ_PACS (its scope is part of every query) and as the
# centre AE LX_WS1; each query runs with the tuned client (TCP_NODELAY) and with Nagle left on
# (Debian DCMTK's default), and with DCMTK's own findscu (default socket) as an independent client.
# Every value is one zhuozhou (ZZ_PACS) owns in both corpora (study n with n % 12 == 0), inside
# the smaller corpus.
# Usage: tests/bench/find.sh [SMALL] [BIG]    (defaults 20000 and 100000; installs orthanc as root)
# Prints the measurements, then a table of p50s with the ratio Orthanc / TeleRead-as-member.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TELEREAD_BUILD_DIR:-$root/build}
work=${TELEREAD_BENCH_DIR:-$root/var/bench-find}
small=${1:-20000}
big=${2:-100000}
tr_port=11292
or_port=11293
source "$root/tests/bench/orthanc.sh"
export TCP_NODELAY=1  # for the storescu loads; the query clients choose their own

# A failed step must not leave a server behind (it would hold the CPU lock's descriptor).
pid= opid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$opid" ] && kill "$opid" 2>/dev/null; true' EXIT

rm -rf "$work"
mkdir -p "$work"
corpus=$build/tests/bench/teleread-bench-corpus
latency=$build/tests/bench/teleread-find-latency
results=$work/results.tsv
printf 'server\tstudies\tcaller\tclient\tquery\tmatches\tp50_ms\tp99_ms\n' >"$results"

start_teleread() {  # storage -> pid
  # Without the [https] table: this benchmark needs no reading API and no certificates.
  sed -e "s/^min_free_disk_mb = .*/min_free_disk_mb = 0/" -e '/^\[https\]/,/^\[/{/^\[https\]/d;/^\[/!d}' "$root/config/teleread.toml" \
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

# The study the selective queries look for: 12348, or one inside a smaller corpus; a multiple
# of 12, so that ZZ_PACS sent it in both corpora.
n=12348
[ "$small" -le $n ] && n=$((small / 2 / 12 * 12))
query_list() {
  cat <<EOF2
patient-id PatientID $(printf 'P%07d' $n) 200
accession AccessionNumber A$n 200
name-prefix PatientName ZHANG^WEI${n%?}* 200
uid StudyInstanceUID 2.25.4242.1.$n 200
date-range StudyDate 20200101-20200102 200
all - - 5
echo - - 200
EOF2
}

# Per-query time of DCMTK's findscu with its default socket (Nagle on): one association, N
# repeats, minus the same with one repeat (process start and association setup); N grows until
# the repeats take about a second, so that the noise of starting a process does not dominate.
findscu_ms() {  # port aet aec key value -> ms per query
  local port=$1 aet=$2 aec=$3 key=$4 value=$5
  local -a k=(-k QueryRetrieveLevel=STUDY -k StudyInstanceUID -k PatientName -k PatientID -k StudyDate
    -k ModalitiesInStudy -k NumberOfStudyRelatedInstances -k AccessionNumber -k StudyDescription)
  [ "$key" != - ] && k+=(-k "$key=$value")
  run_ns() {
    local t0
    t0=$(date +%s%N)
    env -u TCP_NODELAY findscu -S -aet "$aet" -aec "$aec" "${k[@]}" --repeat "$1" 127.0.0.1 "$port" >/dev/null 2>&1
    echo $(($(date +%s%N) - t0))
  }
  local one n=21 many
  one=$(run_ns 1)
  many=$(run_ns $n)
  local per=$(((many - one) / (n - 1)))
  if [ "$per" -lt 50000000 ]; then  # under 50 ms a query: enough repeats for about a second
    n=$((1000000000 / (per > 1000000 ? per : 1000000) + 1))
    one=$(run_ns 1)
    many=$(run_ns $n)
  fi
  awk -v a="$one" -v b="$many" -v n="$n" 'BEGIN { d = (b - a) / (n - 1) / 1e6; printf "%.3f", d < 0 ? 0 : d }'
}

# Every TeleRead query waits for its audit entry to be durable: one commit of two pages (the row
# and its index entry) and its fdatasync. The disk's floor for that, measured on the index's file
# system just before the queries, is printed with the table: the part of each p50 that is the disk's.
floors=$work/floors.tsv
floor_ms() {  # studies
  local ms
  ms=$("$build/tests/bench/teleread-disk-floor" "$work" 2 | awk -F'\t' '$1 == 2 {print $2}')
  echo "disk floor before the queries at $1 studies: 2 pages + fdatasync ${ms:-?} ms" >&2
  printf '%s\t%s\n' "$1" "${ms:--}" >>"$floors"
}

queries() {  # server studies port aet aec
  local server=$1 studies=$2 port=$3 aet=$4 aec=$5
  local name key value repeat client line
  while read -r name key value repeat; do
    local -a args=(--port "$port" --aet "$aet" --aec "$aec" --query "${name/name-prefix/name-wildcard}"
      --repeat "$repeat" --warmup 2)
    [ "$value" != - ] && args+=(--value "$value")
    for client in tuned nagle; do
      line=$("$latency" "${args[@]}" $([ $client = nagle ] && echo --nagle))
      echo "$server $studies $aet $client: $line" >&2
      awk -v s="$server" -v n="$studies" -v a="$aet" -v c="$client" -v q="$name" '{
          for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
          printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s, n, a, c, q, v["matches"], v["p50_ms"], v["p99_ms"] }' \
        <<<"$line" >>"$results"
    done
    [ "$name" = all ] || [ "$name" = echo ] && continue
    local ms
    ms=$(findscu_ms "$port" "$aet" "$aec" "$key" "$value")
    echo "$server $studies $aet findscu: $name mean_ms=$ms" >&2
    printf '%s\t%s\t%s\tfindscu\t%s\t-\t%s\t-\n' "$server" "$studies" "$aet" "$name" "$ms" >>"$results"
  done < <(query_list)
}

echo "== $small one-instance studies, teleread-server and Orthanc" >&2
"$corpus" files "$work/studies" --studies "$small" >&2
# Written back now, not while measuring (the kernel writes dirty pages back ~30 s after they were
# made: api_load.sh's tail).
sync
pid=$(start_teleread "$work/teleread-small")
ae=(ZZ_PACS LS_PACS YX_PACS ZZ_PACS)
for p in 0 1 2 3; do
  storescu -aet "${ae[$p]}" -aec LX_READ +sd +r 127.0.0.1 $tr_port "$work/studies/part$p" >>"$work/storescu.log" 2>&1 &
done
wait -n; wait -n; wait -n; wait -n
sync  # the objects just stored, likewise
floor_ms "$small"
queries teleread "$small" $tr_port ZZ_PACS LX_READ
queries teleread "$small" $tr_port LX_WS1 LX_READ
kill "$pid"; wait "$pid" 2>/dev/null || true
pid=

orthanc_install >&2
opid=$(orthanc_start "$work/orthanc" $or_port 18293)
echo "orthanc load: $(orthanc_load "$work/studies" $or_port) s" >&2
sync
queries orthanc "$small" $or_port ZZ_PACS ORTHANC
orthanc_stop "$opid"
opid=

if [ "$big" -gt 0 ]; then
  echo "== $big studies x 10 instances, generated index" >&2
  "$corpus" index "$work/teleread-big" --studies "$big" --instances 10 >&2
  sync
  pid=$(start_teleread "$work/teleread-big")
  floor_ms "$big"
  queries teleread "$big" $tr_port ZZ_PACS LX_READ
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=
  echo "== member-scoped query plans at $big studies" >&2
  "$corpus" explain "$work/teleread-big" --member zhuozhou >&2
fi

echo
echo "C-FIND p50 ms (findscu: mean per query over one association); shared machine, same run"
awk -F'\t' 'NR > 1 { k = $2 SUBSEP $5 SUBSEP $4; v[$1 SUBSEP $3 SUBSEP k] = $7; m[$1 SUBSEP $3 SUBSEP k] = $6
    if (!(($2 SUBSEP $5 SUBSEP $4) in seen)) { seen[$2 SUBSEP $5 SUBSEP $4] = 1; order[++n] = $2 SUBSEP $5 SUBSEP $4 } }
  END {
    printf "%-8s %-12s %-8s %9s %9s %9s %9s %12s\n", "studies", "query", "client", "orthanc", "tr_member", "tr_centre",
      "matches", "orthanc/mem"
    for (i = 1; i <= n; i++) {
      split(order[i], f, SUBSEP)
      o = v["orthanc" SUBSEP "ZZ_PACS" SUBSEP order[i]]; t = v["teleread" SUBSEP "ZZ_PACS" SUBSEP order[i]]
      c = v["teleread" SUBSEP "LX_WS1" SUBSEP order[i]]
      r = (o != "" && t > 0) ? sprintf("%.1f", o / t) : "-"
      printf "%-8s %-12s %-8s %9s %9s %9s %9s %12s\n", f[1], f[2], f[3], o == "" ? "-" : o, t == "" ? "-" : t,
        c == "" ? "-" : c, m["teleread" SUBSEP "ZZ_PACS" SUBSEP order[i]], r
    }
  }' "$results"
echo "Each TeleRead query includes its audit entry's durable commit. The disk's floor for one (2 pages"
echo "written in place + fdatasync, teleread-disk-floor, mean of 400), just before the queries:"
awk -F'\t' '{ printf "  %s studies: %s ms\n", $1, $2 }' "$floors"
