#!/usr/bin/env bash
# Report delivery latency: a signed report accepted by teleread-server (HTTPS, the CLI's
# `report new --submit`) until the member's PACS (DCMTK storescp, loopback) has answered its
# C-STORE with success. Both instants are the server's own clocks: reports.accepted_ms and
# deliveries.delivered_ms, the latter stamped on the member's success status.
# Usage: tests/bench/report_delivery.sh [COUNT]     (default 200 reports, one study each)
# Needs a build (scripts/build.sh). Results on stdout and in var/bench-reports/latency.tsv.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TELEREAD_BUILD_DIR:-$root/build}
work=${TELEREAD_BENCH_DIR:-$root/var/bench-reports}
count=${1:-200}
dicom_port=11291 http_port=11292 member_port=11293
export TCP_NODELAY=1  # storescp's best setting (Debian's DCMTK leaves Nagle on)
server=$build/server/teleread-server
cli=$build/viewer/teleread

rm -rf "$work"
mkdir -p "$work/member"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

. "$root/tests/lib/scratch_centre.sh"
scratch_pki "$work/pki" wang.li
scratch_config "$work/pki" "$work/teleread.toml" "s|^port = 11201$|port = $member_port|"
scratch_profile "$work/pki" wang.li "$http_port" "$work/wang.li.toml"

storescp -aet ZZ_PACS -od "$work/member" "$member_port" >"$work/storescp.log" 2>&1 &
pids+=($!)
"$server" --config "$work/teleread.toml" --storage "$work/storage" --dicom-port "$dicom_port" \
  --http-port "$http_port" --log-level info >"$work/server.log" 2>&1 &  # info: the PDF copies' figures
pids+=($!)
sleep 1

"$build/samples/teleread-samples" corpus "$work/corpus" --kind small --count "$count" --studies "$count" >/dev/null
storescu -aet ZZ_PACS -aec LX_READ +sd +r 127.0.0.1 "$dicom_port" "$work/corpus"
# Written back now, not while measuring (the kernel writes dirty pages back ~30 s after they were
# made: api_load.sh's tail).
sync
teleread() { "$cli" --profile "$work/wang.li.toml" "$@"; }
for _ in $(seq 1 100); do
  n=$(teleread --json worklist --limit 1000 | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
  [ "$n" -ge "$count" ] && break
  sleep 0.2
done
echo "$n studies on the worklist; reading and reporting them one by one" >&2

start=$(date +%s%N)
for uid in $(teleread --json worklist --limit 1000 | python3 -c \
    'import json,sys; print("\n".join(i["study_instance_uid"] for i in json.load(sys.stdin)["items"]))'); do
  teleread claim "$uid" >/dev/null
  teleread report new "$uid" --findings "右肺上叶见一直径约8mm磨玻璃结节。" --impression "磨玻璃结节，建议复查。" \
    --submit >/dev/null
done
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
db=$work/storage/index.sqlite
for _ in $(seq 1 100); do
  done_n=$(sqlite3 "$db" "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'")
  [ "$done_n" -ge $((2 * count)) ] && break  # each report's SR and its PDF copy
  sleep 0.2
done
sqlite3 -separator $'\t' "$db" "SELECT r.sop_instance_uid, r.accepted_ms, d.delivered_ms, d.attempts FROM reports r
  JOIN deliveries d USING (sop_instance_uid) WHERE d.state = 'delivered'" >"$work/latency.tsv"
received=$(find "$work/member" -type f | wc -l)
python3 - "$work/latency.tsv" "$count" "$received" "$elapsed" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
lat = sorted(int(r[2]) - int(r[1]) for r in rows)
def pct(p): return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]
print(f"reports submitted: {sys.argv[2]} in {int(sys.argv[4]) / 1000:.1f} s (claim + compose + sign + submit, one by one)")
print(f"delivered: {len(lat)}; files at the member: {sys.argv[3]}; attempts > 1: {sum(int(r[3]) > 1 for r in rows)}")
print(f"accepted -> stored at member (ms): p50 {pct(50)}  p99 {pct(99)}  max {lat[-1]}  mean {statistics.mean(lat):.1f}")
PY
# The server's line per report: "PDF copy UID of report UID: N bytes of PDF, M bytes as DICOM,
# typeset in T ms, A ms in all".
grep -a -o 'PDF copy [^ ]* of report [^ ]*: [0-9]* bytes of PDF, [0-9]* bytes as DICOM, typeset in [0-9.]* ms, [0-9.]* ms in all' \
  "$work/server.log" | python3 -c '
import re, statistics, sys
rows = [tuple(float(x) for x in re.search(r": (\d+) bytes of PDF, (\d+) bytes as DICOM, typeset in ([\d.]+) ms, ([\d.]+) ms in all", l).groups()) for l in sys.stdin]
if not rows: sys.exit("no PDF copy lines in the server log")
for i, name in enumerate(["PDF bytes", "DICOM bytes", "typeset ms", "copy ms in all"]):
    v = sorted(r[i] for r in rows)
    print(f"PDF copies ({len(v)}): {name}: mean {statistics.mean(v):.1f}  p50 {v[len(v) // 2]:.1f}  max {v[-1]:.1f}")
'
