#!/usr/bin/env bash
# The README's main command: installs, builds, then runs the sample consortium end to end.
# teleread-server starts on the sample config with its SQLite index in a fresh data directory;
# the three member hospitals push their studies with DCMTK storescu; once each study's quiet
# period has passed it is a reading task; the script prints what arrived and stops the server.
#   TELEREAD_DEMO_DIR   where data, samples and logs go (default: var/demo)
#   TELEREAD_DEMO_PORT  DICOM port (default: 11112)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" >/dev/null
build=${TELEREAD_BUILD_DIR:-$root/build}
work=${TELEREAD_DEMO_DIR:-$root/var/demo}
port=${TELEREAD_DEMO_PORT:-11112}
https_port=${TELEREAD_DEMO_HTTPS_PORT:-8443}

rm -rf "$work"
mkdir -p "$work"
# The sample config, with a 5 s quiet period so that the demo does not wait half a minute, and
# the certificates the demo makes below.
sed -e 's/^quiet_period_seconds = .*/quiet_period_seconds = 5/' \
  -e "s|^certificate = .*|certificate = \"$work/pki/teleread-server.pem\"|" \
  -e "s|^key = .*|key = \"$work/pki/teleread-server.key\"|" \
  -e "s|^ca = .*|ca = \"$work/pki/ca.pem\"|" "$root/config/teleread.toml" >"$work/teleread.toml"

step() { printf '\n== %s\n' "$*"; }

step "Generating the sample consortium's studies"
"$build/samples/teleread-samples" consortium "$work/samples" --ct-slices 40

step "The centre CA and certificates (teleread-server pki; keys are mode 0600)"
server_bin=$build/server/teleread-server
"$server_bin" pki init "$work/pki"
"$server_bin" pki issue "$work/pki" --kind server --name teleread-server >/dev/null
"$server_bin" pki issue "$work/pki" --kind radiologist --name wang.li >/dev/null
"$server_bin" pki issue "$work/pki" --kind admin --name ops >/dev/null
ls -l "$work/pki" | sed 's/^/  /'

step "Starting teleread-server: DICOM on 127.0.0.1:$port, HTTPS on 127.0.0.1:$https_port (data in $work/data)"
"$server_bin" --config "$work/teleread.toml" --storage "$work/data" --dicom-port "$port" --http-port "$https_port" \
  >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  echoscu -aet ZZ_PACS -aec LX_READ 127.0.0.1 "$port" 2>/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.2
done
echo "C-ECHO from ZZ_PACS: OK"

step "Member hospitals push their studies (DCMTK storescu)"
start=$(date +%s%N)
for ae in ZZ_PACS LS_PACS YX_PACS; do
  TCP_NODELAY=1 storescu -aet "$ae" -aec LX_READ +sd +r 127.0.0.1 "$port" "$work/samples/$ae" &
done
wait -n; wait -n; wait -n
echo "$(find "$work/samples" -name '*.dcm' | wc -l) objects pushed by 3 members in $((($(date +%s%N) - start) / 1000000)) ms"

step "An unknown AE title is refused"
echoscu -aet STRANGER -aec LX_READ 127.0.0.1 "$port" 2>&1 | sed 's/^/  /' || true

step "Waiting for the quiet period: complete studies become reading tasks"
status() { "$build/server/teleread-server" --config "$work/teleread.toml" --storage "$work/data" status; }
for _ in $(seq 60); do
  status | grep -q ' receiving$' || break
  sleep 0.5
done
status

api() {  # METHOD PATH: the reading API as radiologist wang.li (mutual TLS)
  curl -sS --fail-with-body --cacert "$work/pki/ca.pem" --cert "$work/pki/wang.li.pem" --key "$work/pki/wang.li.key" \
    -X "$1" "https://127.0.0.1:$https_port$2"
}
step "The radiologist's worklist over HTTPS (priority, then due time)"
api GET /api/v1/worklist | python3 -c '
import json, sys
for r in json.load(sys.stdin)["items"]:
    print(f"  {r['"'"'priority'"'"']:8} {r['"'"'member'"'"']:9} {r['"'"'modalities'"'"']:4} {r['"'"'instances'"'"']:3} inst  {r['"'"'description'"'"']}  {r['"'"'state'"'"']}")'
first=$(api GET "/api/v1/worklist?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["study_instance_uid"])')

step "wang.li claims the most urgent study; a second claim by anyone else would get 409"
api POST "/api/v1/studies/$first/claim" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("  claimed by", r["claimed_by"], "until", r["lease_expires_ms"])'
echo "  priors of this patient across members:"
api GET "/api/v1/studies/$first/priors" | python3 -c '
import json, sys
for p in json.load(sys.stdin)["priors"]: print("   ", p["member"], p["study_date"], p["modalities"], p["description"])'

step "Stopping the server"
kill $server
wait $server || true
trap - EXIT
grep -E 'association .* ended|queued for reading|stopping' "$work/server.log" | sed 's/^/  /'
echo
echo "Data: $work/data (objects/ and index.sqlite); log: $work/server.log"
