#!/usr/bin/env bash
# The reporting loop's own latencies, on loopback, ROUNDS times each:
#  - storage commitment: a member (teleread-samples commit) commits a study of SLICES instances;
#    from the N-ACTION request until the study is a reading task (polled over HTTPS), and until
#    the N-EVENT-REPORT arrived on the same association;
#  - critical results: a critical report accepted (the server's accepted_ms) until the member's
#    webhook receiver (tests/support/webhook_receiver.py, HTTPS with client certificates) has it
#    (its own clock; same host).
# Usage: tests/bench/reporting_loop.sh [ROUNDS] [SLICES]   (default 5 rounds, 100 slices)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TELEREAD_BUILD_DIR:-$root/build}
work=${TELEREAD_BENCH_DIR:-$root/var/bench-reporting}
rounds=${1:-5}
slices=${2:-100}
dicom_port=11391 http_port=11392 member_port=11393 hook_port=11394
server=$build/server/teleread-server
cli=$build/viewer/teleread

rm -rf "$work"
mkdir -p "$work/member"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

. "$root/tests/lib/scratch_centre.sh"
scratch_pki "$work/pki" wang.li
"$server" pki issue "$work/pki" --kind admin --name ops >/dev/null
"$server" pki issue "$work/pki" --kind member --name zz-his --ip 127.0.0.1 >/dev/null
scratch_config "$work/pki" "$work/teleread.toml" "s|^port = 11201$|port = $member_port|" \
  "s|^quiet_period_seconds = .*|quiet_period_seconds = 3600|" \
  "s|^# critical_webhook = .*|critical_webhook = \"https://127.0.0.1:$hook_port/critical\"|"
scratch_profile "$work/pki" wang.li "$http_port" "$work/wang.li.toml"

storescp -aet ZZ_PACS -od "$work/member" "$member_port" >"$work/storescp.log" 2>&1 &
pids+=($!)
python3 "$root/tests/support/webhook_receiver.py" "$hook_port" "$work/hooks.jsonl" "$work/pki/zz-his.pem" \
  "$work/pki/zz-his.key" "$work/pki/ca.pem" >"$work/his.log" 2>&1 &
pids+=($!)
"$server" --config "$work/teleread.toml" --storage "$work/storage" --dicom-port "$dicom_port" \
  --http-port "$http_port" --log-level warn >"$work/server.log" 2>&1 &
pids+=($!)
sleep 1
ops=(curl -sS --cacert "$work/pki/ca.pem" --cert "$work/pki/ops.pem" --key "$work/pki/ops.key")
teleread() { "$cli" --profile "$work/wang.li.toml" "$@"; }
ms() { date +%s%3N; }

echo "round  commit->task_ms  commit->report_ms  accepted->webhook_ms"
for r in $(seq 1 "$rounds"); do
  "$build/samples/teleread-samples" corpus "$work/corpus-$r" --kind small --count "$slices" >/dev/null
  sync  # written back now, not while measuring (the kernel writes dirty pages back ~30 s later)
  study=$(python3 - "$work/corpus-$r" <<'PY'
import os, subprocess, sys
f = next(os.path.join(d, n) for d, _, ns in os.walk(sys.argv[1]) for n in ns)
out = subprocess.run(["dcmdump", "+P", "StudyInstanceUID", f], capture_output=True, text=True).stdout
print(out.split("[")[1].split("]")[0])
PY
)
  storescu -aet ZZ_PACS -aec LX_READ +sd +r 127.0.0.1 "$dicom_port" "$work/corpus-$r"
  start=$(ms)
  "$build/samples/teleread-samples" commit "$work/corpus-$r" --aet ZZ_PACS --port "$dicom_port" >"$work/commit-$r.log" &
  commit=$!
  until "${ops[@]}" "https://127.0.0.1:$http_port/api/v1/studies/$study" | grep -q '"task":{'; do :; done
  task=$(ms)
  wait $commit
  reported=$(sed -E 's/.*report received ([0-9]+) ms.*/\1/' "$work/commit-$r.log")
  teleread claim "$study" >/dev/null
  accepted=$(teleread --json report new "$study" --findings "右侧张力性气胸。" --impression "需立即处理。" --critical \
    --submit | python3 -c 'import json,sys; print(json.load(sys.stdin)["accepted_ms"])')
  until [ "$(wc -l <"$work/hooks.jsonl" 2>/dev/null || echo 0)" -ge "$r" ]; do sleep 0.005; done
  received=$(tail -1 "$work/hooks.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["received_ms"])')
  printf '%5d  %15d  %17d  %20d\n' "$r" $((task - start)) "$reported" $((received - accepted))
done
