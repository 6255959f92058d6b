#!/usr/bin/env bash
# The README's main command: installs, builds, then runs the sample consortium's whole reading
# loop on loopback. teleread-server starts with its SQLite index in a fresh data directory, two
# member hospitals' PACS (DCMTK storescp) wait for reports, the three members push their
# studies, and radiologist wang.li works through the `teleread` CLI: worklist, claim, view
# (PNGs), report, sign, submit. Each member's PACS asks for storage commitment once it has sent
# its studies, so they are read at once rather than after the quiet period. The report has a
# critical finding: Zhuozhou's PACS receives it first in the outbox, finds it by C-FIND, checks
# its signature offline, and Zhuozhou acknowledges the critical result by name. Zhuozhou talks
# DICOM TLS only, both ways: it pushes, commits and queries with its own certificate, and its
# report arrives over TLS. Last, a backup and restore drill: a CT series stored between the index
# snapshot and the copy of the segments is found again by the restored server. Everything started
# is stopped at the end.
#   TELEREAD_DEMO_DIR         where data, samples, PNGs and logs go (default: var/demo)
#   TELEREAD_DEMO_PORT        DICOM port (default 11112); HTTPS: TELEREAD_DEMO_HTTPS_PORT (8443);
#                             DICOM TLS: TELEREAD_DEMO_TLS_PORT (2762)
#   TELEREAD_DEMO_MEMBER_PORT first member PACS port (default 11201); the second's:
#                             TELEREAD_DEMO_MEMBER2_PORT (default the first + 1)
#   TELEREAD_DEMO_CT_SLICES   slices in the sample CT (default 40)
#   TELEREAD_DEMO_NO_BUILD=1  skip install and build (the tests run the demo on their build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "${TELEREAD_DEMO_NO_BUILD:-}" != 1 ]; then
  "$root/scripts/install-deps.sh"
  "$root/scripts/build.sh" >/dev/null
fi
build=${TELEREAD_BUILD_DIR:-$root/build}
work=${TELEREAD_DEMO_DIR:-$root/var/demo}
port=${TELEREAD_DEMO_PORT:-11112}
https_port=${TELEREAD_DEMO_HTTPS_PORT:-8443}
tls_port=${TELEREAD_DEMO_TLS_PORT:-2762}
zz_port=${TELEREAD_DEMO_MEMBER_PORT:-11201}
ls_port=${TELEREAD_DEMO_MEMBER2_PORT:-$((zz_port + 1))}
export TCP_NODELAY=1  # DCMTK's tools with Nagle off, as a tuned PACS runs
server_bin=$build/server/teleread-server
started=$(date +%s)

rm -rf "$work"
mkdir -p "$work/png" "$work/member-ZZ_PACS" "$work/member-LS_PACS"
# The sample config, with a 60 s quiet period (storage commitment completes the studies at once;
# the quiet period is the fallback), the certificates made below, the members' PACS ports, the
# report templates, and DICOM TLS: required from Zhuozhou (the first member) and used for its
# reports.
sed -e 's/^quiet_period_seconds = .*/quiet_period_seconds = 60/' \
  -e "s|^templates = .*|templates = \"$root/config/templates\"|" \
  -e "s|^certificate = .*|certificate = \"$work/pki/teleread-server.pem\"|" \
  -e "s|^key = .*|key = \"$work/pki/teleread-server.key\"|" \
  -e "s|^ca = .*|ca = \"$work/pki/ca.pem\"|" \
  -e "s|^port = 11201$|port = $zz_port|" -e "s|^port = 11202$|port = $ls_port|" \
  -e "s|^\\[reading\\]$|[dicom_tls]\nport = $tls_port\ncertificate = \"$work/pki/teleread-server.pem\"\nkey = \"$work/pki/teleread-server.key\"\nca = \"$work/pki/ca.pem\"\n\n[reading]|" \
  -e '0,/^require_tls = false$/s//require_tls = true/' -e '0,/^tls = false$/s//tls = true/' \
  "$root/config/teleread.toml" >"$work/teleread.toml"

step() { printf '\n== %s\n' "$*"; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

step "Generating the sample consortium's studies"
"$build/samples/teleread-samples" consortium "$work/samples" --ct-slices "${TELEREAD_DEMO_CT_SLICES:-40}"

step "The centre CA and certificates (teleread-server pki; keys are mode 0600)"
"$server_bin" pki init "$work/pki"
"$server_bin" pki issue "$work/pki" --kind server --name teleread-server >/dev/null
"$server_bin" pki issue "$work/pki" --kind radiologist --name wang.li >/dev/null
"$server_bin" pki issue "$work/pki" --kind radiologist --name liu.xin >/dev/null  # the ECG reader
"$server_bin" pki issue "$work/pki" --kind admin --name ops >/dev/null
# Zhuozhou's PACS: one certificate to call the centre and to take reports at 127.0.0.1.
"$server_bin" pki issue "$work/pki" --kind member --name ZZ_PACS --ip 127.0.0.1 >/dev/null
ls "$work/pki" | sed 's/^/  /' | paste -sd' '
zz_tls=(+tls "$work/pki/ZZ_PACS.key" "$work/pki/ZZ_PACS.pem" -pw +cf "$work/pki/ca.pem")

step "Two member hospitals' PACS wait for reports (storescp ZZ_PACS :$zz_port over TLS, LS_PACS :$ls_port)"
storescp -aet ZZ_PACS "${zz_tls[@]}" -od "$work/member-ZZ_PACS" "$zz_port" >"$work/member-ZZ_PACS.log" 2>&1 &
pids+=($!)
storescp -aet LS_PACS -od "$work/member-LS_PACS" "$ls_port" >"$work/member-LS_PACS.log" 2>&1 &
pids+=($!)

step "Starting teleread-server: DICOM on 127.0.0.1:$port, DICOM TLS on :$tls_port, HTTPS on :$https_port (data in $work/data)"
"$server_bin" --config "$work/teleread.toml" --storage "$work/data" --dicom-port "$port" --http-port "$https_port" \
  >"$work/server.log" 2>&1 &
server=$!
pids+=($server)
for _ in $(seq 50); do
  echoscu -aet LS_PACS -aec LX_READ 127.0.0.1 "$port" 2>/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.2
done
echo "C-ECHO from LS_PACS: OK"
echoscu -aet ZZ_PACS -aec LX_READ "${zz_tls[@]}" 127.0.0.1 "$tls_port"
echo "C-ECHO from ZZ_PACS over DICOM TLS with its certificate: OK"

step "Member hospitals push their studies (DCMTK storescu; Zhuozhou over TLS)"
start=$(date +%s%N)
storescu -aet ZZ_PACS -aec LX_READ "${zz_tls[@]}" +sd +r 127.0.0.1 "$tls_port" "$work/samples/ZZ_PACS" &
for ae in LS_PACS YX_PACS; do
  storescu -aet "$ae" -aec LX_READ +sd +r 127.0.0.1 "$port" "$work/samples/$ae" &
done
wait -n; wait -n; wait -n
echo "$(find "$work/samples" -name '*.dcm' | wc -l) objects pushed by 3 members in $((($(date +%s%N) - start) / 1000000)) ms"

step "An unknown AE title is refused, and so are Zhuozhou and the centre workstation LX_WS1 without TLS"
echoscu -aet STRANGER -aec LX_READ 127.0.0.1 "$port" 2>&1 | sed 's/^/  /' || true
echoscu -aet ZZ_PACS -aec LX_READ 127.0.0.1 "$port" 2>&1 | sed 's/^/  /' || true
echoscu -aet LX_WS1 -aec LX_READ 127.0.0.1 "$port" 2>&1 | sed 's/^/  /' || true

step "Each member's PACS requests storage commitment: its studies become reading tasks at once"
"$build/samples/teleread-samples" commit "$work/samples/ZZ_PACS" --aet ZZ_PACS --port "$tls_port" \
  --tls-key "$work/pki/ZZ_PACS.key" --tls-certificate "$work/pki/ZZ_PACS.pem" --tls-ca "$work/pki/ca.pem"
for ae in LS_PACS YX_PACS; do
  "$build/samples/teleread-samples" commit "$work/samples/$ae" --aet "$ae" --port "$port"
done
status() { "$server_bin" --config "$work/teleread.toml" --storage "$work/data" status; }
for _ in $(seq 60); do
  status | grep -q ' receiving$' || break
  sleep 0.5
done
status

# The radiologist's workstation profile: the server, wang.li's certificate and key, the centre CA.
cat >"$work/wang.li.toml" <<TOML
server = "https://127.0.0.1:$https_port"
certificate = "$work/pki/wang.li.pem"
key = "$work/pki/wang.li.key"
ca = "$work/pki/ca.pem"
TOML
sed 's/wang\.li/liu.xin/g' "$work/wang.li.toml" >"$work/liu.xin.toml"
teleread() {
  echo "\$ teleread $*" >&2
  XDG_CACHE_HOME="$work/cache" "$build/viewer/teleread" --profile "$work/wang.li.toml" "$@"
}
# liu.xin reads ECGs, which wang.li's worklist (CT, MR, CR, DX) does not show.
ecg_reader() {
  echo "\$ teleread $* (as liu.xin)" >&2
  XDG_CACHE_HOME="$work/cache" "$build/viewer/teleread" --profile "$work/liu.xin.toml" "$@"
}

step "wang.li at the reading workstation"
teleread whoami
teleread worklist
study=$(teleread --json worklist --limit 1 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["study_instance_uid"])')

step "Claim the most urgent study and look at it (a second radiologist's claim would get 409)"
teleread claim "$study"
teleread show "$study"
teleread fetch "$study"
teleread view "$study" --preset lung --out "$work/png/ct-lung.png"
teleread view "$study" --sheet "$work/png/ct-sheet.png"

step "The 12-lead ECG from Laishui on ECG paper (25 mm/s, 10 mm/mV), its patient named in the header, at liu.xin's workstation"
ecg=$(ecg_reader --json worklist --modality ecg 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["study_instance_uid"])')
ecg_reader show "$ecg" | head -3
ecg_reader view "$ecg" --out "$work/png/ecg.png"

step "Write the report, sign it with wang.li's own key, submit it"
cat >"$work/report.txt" <<'TEXT'
Findings:
右侧胸腔见气体密度影，右肺组织受压约40%，纵隔轻度左移。右肺上叶尖段见一直径约8mm磨玻璃结节。
Impression:
右侧张力性气胸可能，需立即处理。右肺上叶磨玻璃结节。
Recommendation:
立即临床处理气胸；结节3个月后低剂量CT复查。
Critical finding: yes
TEXT
teleread report new "$study" --file "$work/report.txt" --submit

step "Zhuozhou's PACS receives the signed report and its PDF copy (over DICOM TLS)"
for _ in $(seq 100); do
  ls "$work/member-ZZ_PACS"/SR* "$work/member-ZZ_PACS"/PDF* >/dev/null 2>&1 && break
  sleep 0.1
done
ls -l "$work/member-ZZ_PACS" | tail -n +2 | sed 's/^/  /'
report=$(ls -d "$work/member-ZZ_PACS"/SR* | head -1)
pdf_copy=$(ls -d "$work/member-ZZ_PACS"/PDF* 2>/dev/null | head -1)
echo "  PDF copy (Encapsulated PDF, same series) delivered to Zhuozhou: ${pdf_copy:-NOT RECEIVED}"

step "The PDF copy for screens that cannot show an SR (the signed SR stays the authoritative report)"
sop=$(teleread --json reports --study "$study" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["sop_instance_uid"])')
teleread report get "$sop" --pdf -o "$work/report.pdf"
echo "  $(head -c 8 "$work/report.pdf" | tr -d '\r\n'), $(stat -c %s "$work/report.pdf") bytes: $work/report.pdf"
if command -v pdftotext >/dev/null; then
  pdftotext -enc UTF-8 "$work/report.pdf" - | grep -v '^$' | head -n 14 | sed 's/^/  | /'
fi

step "Zhuozhou finds it by C-FIND over TLS (Modality SR, SERIES level)"
findscu -S -aet ZZ_PACS -aec LX_READ "${zz_tls[@]}" -k QueryRetrieveLevel=SERIES -k StudyInstanceUID="$study" \
  -k Modality=SR -k SeriesInstanceUID -k SeriesDescription -k NumberOfSeriesRelatedInstances 127.0.0.1 "$tls_port" 2>&1 |
  grep -a -E 'SeriesDescription|NumberOfSeriesRelatedInstances' | sed 's/^/  /'

step "Zhuozhou checks the signature offline with the centre's CA"
"$build/viewer/teleread" report verify "$report" --ca "$work/pki/ca.pem"

step "Zhuozhou acknowledges the critical result with its certificate, naming who took the call"
cat >"$work/zhuozhou.toml" <<TOML
server = "https://127.0.0.1:$https_port"
certificate = "$work/pki/ZZ_PACS.pem"
key = "$work/pki/ZZ_PACS.key"
ca = "$work/pki/ca.pem"
TOML
zz() {
  echo "\$ teleread (Zhuozhou) $*" >&2
  "$build/viewer/teleread" --profile "$work/zhuozhou.toml" "$@"
}
zz critical --state unacknowledged
critical=$(zz --json critical --state unacknowledged 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["report_sop_instance_uid"])')
zz critical ack "$critical" --by "李华 (急诊科值班医生)"
zz critical --state acknowledged

step "Turnaround clocks of the study"
teleread --json worklist --state reported 2>/dev/null | python3 -c '
import json, sys
for r in json.load(sys.stdin)["items"]:
    c = r["complete_ms"]
    s = lambda k: "-" if not r.get(k) else f"{(r[k] - c) / 1000:.1f} s"
    print(f"  {r['"'"'description'"'"']} ({r['"'"'priority'"'"']}): complete -> claimed {s('"'"'claimed_ms'"'"')}, "
          f"-> signed {s('"'"'reported_ms'"'"')}, -> delivered {s('"'"'delivered_ms'"'"')}, "
          f"-> acknowledged {s('"'"'acknowledged_ms'"'"')}")'

step "The study exported as plain DICOM files (teleread-server export, beside the running server), each checked with dcmftest"
"$server_bin" --config "$work/teleread.toml" --storage "$work/data" export "$study" -o "$work/export"
exported=$(find "$work/export" -name '*.dcm' | wc -l)
bad=$(find "$work/export" -name '*.dcm' -print0 | xargs -0 dcmftest | grep -vc '^yes:' || true)
echo "  $exported file(s) under $work/export, $bad not DICOM Part 10"

step "Backup (operator guide 8.2): the index snapshot first; a late CT series from Laishui; then the segments"
mkdir -p "$work/backup"
sqlite3 "$work/data/index.sqlite" ".backup '$work/backup/index.sqlite'"
"$build/samples/teleread-samples" corpus "$work/late" --kind ct --count 3 >/dev/null
storescu -aet LS_PACS -aec LX_READ +sd +r 127.0.0.1 "$port" "$work/late"
echo "  3 late CT objects stored after the snapshot"
cp -a "$work/data/segments" "$work/data/objects" "$work/backup/"  # rsync -a --inplace in production

step "Stopping the server and the member PACS"
cleanup
trap - EXIT
grep -a -E 'ZZ_PACS .*ended|delivered to|accepted from|storage commitment|critical result' "$work/server.log" |
  sed 's/^/  /'

step "Restore (operator guide 8.3): a server on the restored copy finds the late objects in the segments by their sealed trailers (the start-up step that also re-indexes the segment rows a power cut takes: a trailer is its object's durable index record, so their commits skip the WAL sync)"
mkdir -p "$work/restored"
cp "$work/backup/index.sqlite" "$work/restored/"
cp -a "$work/backup/segments" "$work/backup/objects" "$work/restored/"
"$server_bin" --config "$work/teleread.toml" --storage "$work/restored" --dicom-port "$port" \
  --http-port "$https_port" >"$work/restored.log" 2>&1 &
restored=$!
pids=($restored)
trap cleanup EXIT
for _ in $(seq 50); do
  echoscu -aet LS_PACS -aec LX_READ 127.0.0.1 "$port" 2>/dev/null && break
  kill -0 $restored 2>/dev/null || { cat "$work/restored.log"; exit 1; }
  sleep 0.2
done
grep -a -o 'recovery: indexed .*' "$work/restored.log" | sed 's/^/  /' ||
  { echo "  nothing found in the restored segments:"; tail -50 "$work/restored.log"; exit 1; }
"$server_bin" --config "$work/teleread.toml" --storage "$work/restored" status | grep -E 'instances|objects:' |
  sed 's/^/  /'
"$server_bin" --config "$work/teleread.toml" --storage "$work/restored" verify-segments | sed 's/^/  /'
cleanup
trap - EXIT
echo
echo "Data: $work/data (objects/ and index.sqlite); PNGs: $work/png; member PACS: $work/member-ZZ_PACS"
echo "Logs: $work/server.log; the whole loop took $(($(date +%s) - started)) s after the build"
