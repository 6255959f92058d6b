#!/usr/bin/env bash
# Reading API under load: the first worklist page (50 rows) and claims, p50/p99, with CLIENTS
# concurrent keep-alive mutual-TLS clients over an index of TASKS waiting tasks, while the
# member ZZ_PACS pushes new CT studies at the same time. Two load models:
#   closed loop: each client asks again as soon as it is answered (no think time); on two cores
#     latency is then about CLIENTS / throughput, whatever a request costs;
#   paced: each client waits 100-500 ms between requests, as a workstation refreshing its
#     worklist or claiming does (THINK_MS overrides the range).
# Also the same requests from one client alone, for reference.
# The clients are several radiologists of the sample consortium (API_READERS, default "wang.li
# zhao.min": routed differently, CT/MR/CR/DX and all), client i being reader i modulo their
# number; one reader (API_READERS=wang.li) is the best case for the worklist pages, which are
# shared by readers routed alike only. Claims are all wang.li's: past the last task the UIDs
# wrap, and a study claimed again by another reader would be a 409, not the same work.
# The push sends each object once (new studies all along, each stored, not compared with a copy)
# at API_PUSH_RATE objects/s (default 40, ~20 MB/s: one member's link), API_CT objects in
# API_CT_STUDIES studies, 10 objects per association; each measurement prints how many new
# objects were stored while it ran, so that "while one member pushes" is shown, not assumed.
# API_PUSH_RATE=0 sends as fast as the server takes them.
# Worklist requests ask for gzip and inflate the answer, as the viewer does; API_GZIP=0 asks for
# plain JSON (~35 kB a page of 50 rows).
# Each closed-loop phase has CLOSED_REQUESTS per client (default 1000: 32,000 samples, ~2 s, its
# p99 the 320th worst; at 40 per client a phase lasted 0.1 s, its p99 the 13th worst of 1,280,
# and the push barely overlapped it), each paced one REQUESTS_PER_CLIENT (~13 s at 40). The push
# starts 1 s before the first phase and lasts until after the last (API_CT / API_PUSH_RATE: 40 s).
# API_TRACE=1 starts the server with TELEREAD_API_TRACE (server/http/request_trace.h): one line
# per request in $work/server.log, each line tagged with the phase it belongs to by the line
# "phase <name>" logged before it.
# Each measurement also prints the server's CPU time (user + system) per request over the phase,
# the push's share included: on a machine whose speed drifts, a steadier figure for comparing
# two builds than a closed loop's latency.
# API_PERF=<phase> (worklist-closed, claim-closed, worklist-paced or claim-paced) records the server
# with perf (DWARF call graphs) while that phase runs, into $work/<phase>.perf.data; that phase's
# CPU per request then includes perf's own cost.
# Usage: tests/bench/api_load.sh [TASKS] [CLIENTS] [REQUESTS_PER_CLIENT] [CLOSED_REQUESTS]
#   (defaults 10000 32 40 1000; "10000 32 40 40" is the form used up to stop 27)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TELEREAD_BUILD_DIR:-$root/build}
work=${TELEREAD_BENCH_DIR:-$root/var/bench-api}
tasks=${1:-10000}
clients=${2:-32}
per_client=${3:-40}
closed_per_client=${4:-1000}
dicom_port=11392
http_port=11393
server=$build/server/teleread-server
load=$build/tests/bench/teleread-api-load
source "$root/tests/lib/scratch_centre.sh"

rm -rf "$work"
mkdir -p "$work"
case "${API_PERF:-}" in
  "" | worklist-closed | claim-closed | worklist-paced | claim-paced) ;;
  *) echo "API_PERF names no phase: worklist-closed, claim-closed, worklist-paced or claim-paced" >&2; exit 2 ;;
esac
read -r -a readers <<<"${API_READERS:-wang.li zhao.min}"
scratch_pki "$work/pki" "${readers[@]}"
scratch_config "$work/pki" "$work/teleread.toml"
"$build/tests/bench/teleread-bench-corpus" index "$work/data" --studies "$tasks" --instances 1 --tasks >&2
# New studies to push (8 x 200 CT images, ~800 MB: 40 s at 40/s), each object sent once.
"$build/samples/teleread-samples" corpus "$work/ct" --kind ct --count "${API_CT:-1600}" \
  --studies "${API_CT_STUDIES:-8}" >/dev/null
# Written back now, not mid-run: the kernel writes dirty pages back 30 s after they were made
# (vm.dirty_expire_centisecs), and the ~800 MB just made once did so in half a second during the
# paced claims, stalling the index's fdatasync 80-160 ms (strace, /proc/diskstats).
sync
think=${THINK_MS:-100-500}
rate=${API_PUSH_RATE:-40}
gzip=()
if [ "${API_GZIP:-1}" = 0 ]; then gzip=(--no-gzip); fi

trace_env=()
if [ "${API_TRACE:-0}" = 1 ]; then trace_env=(TELEREAD_API_TRACE=1); fi
env "${trace_env[@]}" "$server" --config "$work/teleread.toml" --storage "$work/data" --dicom-port $dicom_port --http-port $http_port \
  --log-level warn >>"$work/server.log" 2>&1 &
pid=$!
pusher=
perf_pid=
cleanup() {
  [ -z "$pusher" ] || kill "$pusher" 2>/dev/null || true
  [ -z "$perf_pid" ] || kill -INT "$perf_pid" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
curl_ok() {
  curl -sf --cert "$work/pki/wang.li.pem" --key "$work/pki/wang.li.key" --cacert "$work/pki/ca.pem" \
    "https://127.0.0.1:$http_port/healthz" >/dev/null 2>&1
}
for _ in $(seq 200); do curl_ok && break; sleep 0.1; done
curl_ok || { echo "server did not answer; see $work/server.log" >&2; exit 1; }

one=(--port $http_port --cert "$work/pki/wang.li.pem" --key "$work/pki/wang.li.key" --ca "$work/pki/ca.pem")
certs=(--port $http_port --ca "$work/pki/ca.pem")
for r in "${readers[@]}"; do certs+=(--cert "$work/pki/$r.pem" --key "$work/pki/$r.key"); done
# Claims take distinct studies: generated UIDs 2.25.4242.1.<n>, in a different range per run;
# past the last task the range wraps (a study claimed again by its holder: the same write and
# audit), instead of asking for studies that do not exist (404s counted as errors, and fast).
uids() { seq "$1" "$2" | awk -v n="$tasks" '{print "2.25.4242.1." $1 % n}' >"$work/uids-$1"; echo "$work/uids-$1"; }

echo "one client, nothing else running:"
"$load" "${one[@]}" --clients 1 --requests 100 --mode worklist "${gzip[@]}"
"$load" "${one[@]}" --clients 1 --requests 100 --mode claim --uids "$(uids 0 99)"

# One member pushes new CT studies while the clients run: 10 objects per association, paced.
find "$work/ct" -type f | sort >"$work/ct-files"
(if [ "$rate" = 0 ]; then
   storescu -v -aet ZZ_PACS -aec LX_READ +sd +r 127.0.0.1 $dicom_port "$work/ct" >>"$work/storescu.log" 2>&1
 else
   start=$(date +%s.%N) sent=0
   while mapfile -t -n 10 chunk && [ ${#chunk[@]} -gt 0 ]; do
     storescu -v -aet ZZ_PACS -aec LX_READ 127.0.0.1 $dicom_port "${chunk[@]}" </dev/null >>"$work/storescu.log" 2>&1 || true
     sent=$((sent + ${#chunk[@]}))
     pause=$(echo "$start + $sent / $rate - $(date +%s.%N)" | bc -l)
     [ "${pause:0:1}" = "-" ] || sleep "$pause"
   done <"$work/ct-files"
 fi
 echo "push ended: $(date +%s.%N)" >>"$work/storescu.log") &
pusher=$!
sleep 1
server_cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$pid/stat"; }
stored() { sqlite3 "$work/data/index.sqlite" "SELECT COUNT(*) FROM instances"; }
before=$(stored)
# One measurement (the load program's arguments), then how many new objects the member's push
# stored while it ran.
# measure NAME REQUESTS_PER_CLIENT ARGS...
measure() {
  local n0 name=$1 requests=$2
  shift 2
  echo "phase $name" >>"$work/server.log"
  n0=$(stored)
  if [ "${API_PERF:-}" = "$name" ]; then
    perf record -F 1000 --call-graph dwarf,16384 -p "$pid" -o "$work/$name.perf.data" >"$work/$name.perf.log" 2>&1 &
    perf_pid=$!
    sleep 0.5
    kill -0 "$perf_pid" 2>/dev/null || { echo "perf did not start; see $work/$name.perf.log" >&2; perf_pid=; }
  fi
  local c0 c1
  c0=$(server_cpu_ms)
  "$load" --clients "$clients" --requests "$requests" "$@"
  c1=$(server_cpu_ms)
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" || true
    perf_pid=
  fi
  echo "  new CT objects stored meanwhile: $(($(stored) - n0)); server CPU per request (the push's included):" \
    "$(((c1 - c0) * 1000 / (clients * requests))) us"
}
echo "$clients clients (readers: ${readers[*]}), closed loop, ZZ_PACS pushing CT meanwhile ($rate objects/s):"
measure worklist-closed "$closed_per_client" "${certs[@]}" --mode worklist "${gzip[@]}"
measure claim-closed "$closed_per_client" "${one[@]}" --mode claim \
  --uids "$(uids 100 $((100 + clients * closed_per_client - 1)))"
echo "$clients clients, each pausing $think ms between requests, ZZ_PACS pushing CT meanwhile:"
next=$((100 + clients * closed_per_client))
measure worklist-paced "$per_client" "${certs[@]}" --mode worklist --think-ms "$think" "${gzip[@]}"
measure claim-paced "$per_client" "${one[@]}" --mode claim --think-ms "$think" \
  --uids "$(uids $next $((next + clients * per_client - 1)))"
grep -q "push ended" "$work/storescu.log" && echo "note: the push ended before the last measurement did" >&2
kill "$pusher" 2>/dev/null || true  # gone already when the push ended
wait "$pusher" 2>/dev/null || true
pusher=
echo "objects acknowledged during the run: $(grep -c 'Received Store Response (Success)' "$work/storescu.log" || true)," \
  "new ones stored: $(($(stored) - before))"
