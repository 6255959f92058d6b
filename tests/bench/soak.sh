#!/usr/bin/env bash
# Soak: ASSOCS storescu associations pushing in a loop and CLIENTS HTTPS API clients (worklist,
# study detail, claim/release) working for MINUTES; samples the server's RSS, threads and open
# file descriptors every 10 s and counts errors on both sides. Not part of ctest.
# Usage: tests/bench/soak.sh [MINUTES] [ASSOCS] [CLIENTS]      (defaults 10, 16, 32)
# Results: var/soak/samples.tsv (time, rss_kb, threads, fds) and a summary on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TELEREAD_BUILD_DIR:-$root/build}
work=${TELEREAD_SOAK_DIR:-$root/var/soak}
minutes=${1:-10} assocs=${2:-16} clients=${3:-32}
dicom_port=11391 http_port=11392
export TCP_NODELAY=1
server=$build/server/teleread-server

rm -rf "$work"
mkdir -p "$work/errors"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
. "$root/tests/lib/scratch_centre.sh"
scratch_pki "$work/pki" wang.li zhao.min
scratch_config "$work/pki" "$work/teleread.toml" "s|^quiet_period_seconds = .*|quiet_period_seconds = 2|" \
  "s|^max_associations = .*|max_associations = $((assocs + 4))|"
"$server" --config "$work/teleread.toml" --storage "$work/storage" --dicom-port "$dicom_port" \
  --http-port "$http_port" --log-level warn >"$work/server.log" 2>&1 &
spid=$!
pids+=($spid)
sleep 1
"$build/samples/teleread-samples" corpus "$work/corpus" --kind small --count 400 --studies 40 >/dev/null
deadline=$(($(date +%s) + minutes * 60))

# DICOM: each association re-sends the corpus (same SOP UIDs: identical re-sends, answered 0000).
for i in $(seq 1 "$assocs"); do
  (
    while [ "$(date +%s)" -lt "$deadline" ]; do
      storescu -aet ZZ_PACS -aec LX_READ +sd +r 127.0.0.1 "$dicom_port" "$work/corpus/$((i % 40))" \
        >/dev/null 2>>"$work/errors/dicom-$i" || echo "association failed" >>"$work/errors/dicom-$i"
      echo 1 >>"$work/errors/dicom-$i.count"
    done
  ) &
  pids+=($!)
done
# HTTPS: worklist, a study's detail, claim and release, over and over.
for i in $(seq 1 "$clients"); do
  (
    who=$([ $((i % 2)) = 0 ] && echo wang.li || echo zhao.min)
    c=(curl -sS -o /dev/null -w '%{http_code}\n' --cacert "$work/pki/ca.pem" --cert "$work/pki/$who.pem"
       --key "$work/pki/$who.key")
    base=https://127.0.0.1:$http_port/api/v1
    while [ "$(date +%s)" -lt "$deadline" ]; do
      code=$("${c[@]}" "$base/worklist?limit=20")
      [ "$code" = 200 ] || echo "worklist $code" >>"$work/errors/http-$i"
      uid=$(curl -sS --cacert "$work/pki/ca.pem" --cert "$work/pki/$who.pem" --key "$work/pki/$who.key" \
        "$base/worklist?limit=40" | python3 -c 'import json,random,sys; i=json.load(sys.stdin)["items"]; print(random.choice(i)["study_instance_uid"] if i else "")' 2>/dev/null || true)
      if [ -n "$uid" ]; then
        code=$("${c[@]}" "$base/studies/$uid"); [ "$code" = 200 ] || echo "study $code" >>"$work/errors/http-$i"
        code=$("${c[@]}" -X POST "$base/studies/$uid/claim")
        # 409 is the expected answer under contention: another radiologist holds it, or another
        # client of the same radiologist released it first.
        if [ "$code" = 200 ]; then
          code=$("${c[@]}" -X POST "$base/studies/$uid/release")
          [ "$code" = 200 ] || [ "$code" = 409 ] || echo "release $code" >>"$work/errors/http-$i"
        elif [ "$code" != 409 ]; then
          echo "claim $code" >>"$work/errors/http-$i"
        fi
      fi
      echo 1 >>"$work/errors/http-$i.count"
    done
  ) &
  pids+=($!)
done

printf 'seconds\trss_kb\tthreads\tfds\n' >"$work/samples.tsv"
start=$(date +%s)
while [ "$(date +%s)" -lt "$deadline" ]; do
  rss=$(awk '/^VmRSS/ {print $2}' /proc/$spid/status)
  threads=$(awk '/^Threads/ {print $2}' /proc/$spid/status)
  fds=$(ls /proc/$spid/fd | wc -l)
  printf '%s\t%s\t%s\t%s\n' $(($(date +%s) - start)) "$rss" "$threads" "$fds" >>"$work/samples.tsv"
  sleep 10
done
sleep 5  # let the last loops finish
errors=$(find "$work/errors" -type f ! -name '*.count' -exec cat {} + | wc -l)
sum() { find "$work/errors" -name "$1-*.count" -exec cat {} + | wc -l; }
stores=$(sum dicom)
rounds=$(sum http)
kill -0 "$spid" || { echo "the server died"; exit 1; }
python3 - "$work/samples.tsv" "$errors" "$stores" "$rounds" "$assocs" "$clients" "$minutes" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:] if l.strip()]
rss = [int(r[1]) for r in rows]; th = [int(r[2]) for r in rows]; fd = [int(r[3]) for r in rows]
print(f"{sys.argv[7]} min, {sys.argv[5]} associations pushing, {sys.argv[6]} API clients")
print(f"storescu runs: {sys.argv[3]} (10 objects each); API rounds: {sys.argv[4]}; errors: {sys.argv[2]}")
print(f"RSS MB first/max/last: {rss[0]/1024:.1f} / {max(rss)/1024:.1f} / {rss[-1]/1024:.1f}")
print(f"threads min/max: {min(th)} / {max(th)}; fds min/max: {min(fd)} / {max(fd)}")
PY
[ "$errors" = 0 ]
