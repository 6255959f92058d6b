#!/usr/bin/env bash
# Reading API under load: the first worklist page (50 rows) and claims, p50/p99, with CLIENTS
# concurrent keep-alive mutual-TLS clients over an index of TASKS waiting tasks, while the
# member ZZ_PACS pushes CT studies (storescu, in a loop) at the same time. Two load models:
#   closed loop: each client asks again as soon as it is answered (no think time); on two cores
#     latency is then about CLIENTS / throughput, whatever a request costs;
#   paced: each client waits 100-500 ms between requests, as a workstation refreshing its
#     worklist or claiming does (THINK_MS overrides the range).
# Also the same requests from one client alone, for reference.
# Usage: tests/bench/api_load.sh [TASKS] [CLIENTS] [REQUESTS_PER_CLIENT]   (defaults 10000 32 40)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TELEREAD_BUILD_DIR:-$root/build}
work=${TELEREAD_BENCH_DIR:-$root/var/bench-api}
tasks=${1:-10000}
clients=${2:-32}
per_client=${3:-40}
dicom_port=11392
http_port=11393
server=$build/server/teleread-server
load=$build/tests/bench/teleread-api-load
source "$root/tests/lib/scratch_centre.sh"

rm -rf "$work"
mkdir -p "$work"
scratch_pki "$work/pki" wang.li
scratch_config "$work/pki" "$work/teleread.toml"
"$build/tests/bench/teleread-bench-corpus" index "$work/data" --studies "$tasks" --instances 1 --tasks >&2
# New studies to push (4 x 150 CT images, ~300 MB): after one pass the loop re-sends them,
# which the server compares rather than stores; the count of new instances is printed.
"$build/samples/teleread-samples" corpus "$work/ct" --kind ct --count "${API_CT:-600}" --studies 4 >/dev/null
think=${THINK_MS:-100-500}

"$server" --config "$work/teleread.toml" --storage "$work/data" --dicom-port $dicom_port --http-port $http_port \
  --log-level warn >"$work/server.log" 2>&1 &
pid=$!
pusher=
cleanup() {
  [ -n "$pusher" ] && kill "$pusher" 2>/dev/null
  kill "$pid" 2>/dev/null
  wait 2>/dev/null || true
}
trap cleanup EXIT
curl_ok() {
  curl -sf --cert "$work/pki/wang.li.pem" --key "$work/pki/wang.li.key" --cacert "$work/pki/ca.pem" \
    "https://127.0.0.1:$http_port/healthz" >/dev/null 2>&1
}
for _ in $(seq 200); do curl_ok && break; sleep 0.1; done
curl_ok || { echo "server did not answer; see $work/server.log" >&2; exit 1; }

certs=(--port $http_port --cert "$work/pki/wang.li.pem" --key "$work/pki/wang.li.key" --ca "$work/pki/ca.pem")
# Claims take distinct studies: generated UIDs 2.25.4242.1.<n>, in a different range per run.
uids() { seq "$1" "$2" | sed 's/^/2.25.4242.1./' >"$work/uids-$1"; echo "$work/uids-$1"; }

echo "one client, nothing else running:"
"$load" "${certs[@]}" --clients 1 --requests 100 --mode worklist
"$load" "${certs[@]}" --clients 1 --requests 100 --mode claim --uids "$(uids 0 99)"

# One member pushes a CT study over and over while the clients run.
(while true; do
   storescu -v -aet ZZ_PACS -aec LX_READ +sd +r 127.0.0.1 $dicom_port "$work/ct" >>"$work/storescu.log" 2>&1 || sleep 0.2
 done) &
pusher=$!
sleep 1
before=$(sqlite3 "$work/data/index.sqlite" "SELECT COUNT(*) FROM instances")
echo "$clients clients, closed loop, ZZ_PACS pushing CT meanwhile:"
"$load" "${certs[@]}" --clients "$clients" --requests "$per_client" --mode worklist
"$load" "${certs[@]}" --clients "$clients" --requests "$per_client" --mode claim \
  --uids "$(uids 100 $((100 + clients * per_client - 1)))"
echo "$clients clients, each pausing $think ms between requests, ZZ_PACS pushing CT meanwhile:"
next=$((100 + clients * per_client))
"$load" "${certs[@]}" --clients "$clients" --requests "$per_client" --mode worklist --think-ms "$think"
"$load" "${certs[@]}" --clients "$clients" --requests "$per_client" --mode claim --think-ms "$think" \
  --uids "$(uids $next $((next + clients * per_client - 1)))"
kill "$pusher" 2>/dev/null; wait "$pusher" 2>/dev/null || true
pusher=
echo "instances acknowledged during the run: $(grep -c 'Received Store Response (Success)' "$work/storescu.log" || true)," \
  "new ones stored: $(($(sqlite3 "$work/data/index.sqlite" "SELECT COUNT(*) FROM instances") - before))"
