#!/usr/bin/env bash
# The interactive reader's speed, in a real terminal (tmux): the time from a key press to the
# next 512x512 CT image drawn, and the time to the first image of a 300-image CT already cached.
# Targets: p50 <= 30 ms a key, first image <= 300 ms.
# Usage: tests/bench/reader.sh [COUNT] [KEYS]    (default 300 CT images, 100 key presses)
# The reader appends its own timings to $TELEREAD_READER_TRACE: a key's is from reading it to the
# last byte of the redraw written to the terminal; the first image's is the wall clock when it was
# written, taken against the launch time here (so it includes start-up, the API call and the draw).
# Needs a build (scripts/build.sh) and tmux. Results on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TELEREAD_BUILD_DIR:-$root/build}
work=${TELEREAD_BENCH_DIR:-$root/var/bench-reader}
count=${1:-300}
keys=${2:-100}
dicom_port=11294 http_port=11295
export TCP_NODELAY=1
server=$build/server/teleread-server
cli=$build/viewer/teleread
sock=$work/tmux.sock

rm -rf "$work"
mkdir -p "$work"
pids=()
trap 'tmux -S "$sock" kill-server 2>/dev/null || true; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

. "$root/tests/lib/scratch_centre.sh"
scratch_pki "$work/pki" wang.li
scratch_config "$work/pki" "$work/teleread.toml"
scratch_profile "$work/pki" wang.li "$http_port" "$work/wang.li.toml"
"$server" --config "$work/teleread.toml" --storage "$work/storage" --dicom-port "$dicom_port" \
  --http-port "$http_port" --log-level warn >"$work/server.log" 2>&1 &
pids+=($!)
sleep 1
"$build/samples/teleread-samples" corpus "$work/corpus" --kind ct --count "$count" >/dev/null
storescu -aet ZZ_PACS -aec LX_READ +sd +r -xs 127.0.0.1 "$dicom_port" "$work/corpus"
# Written back now, not while measuring (the kernel writes dirty pages back ~30 s after they were
# made: api_load.sh's tail).
sync
teleread() { XDG_CACHE_HOME="$work/cache" "$cli" --profile "$work/wang.li.toml" "$@"; }
study=
for _ in $(seq 1 100); do
  study=$(teleread --json worklist | python3 -c 'import json,sys; i=json.load(sys.stdin)["items"]; print(i[0]["study_instance_uid"] if i else "")')
  [ -n "$study" ] && break
  sleep 0.2
done
teleread fetch "$study" >&2

trace=$work/trace.txt
launch() {  # one reader in a 200x60 tmux window
  tmux -S "$sock" new-session -d -s reader -x 200 -y 60 \
    "env TELEREAD_GRAPHICS=${TELEREAD_GRAPHICS:-symbols} TELEREAD_READER_TRACE=$trace XDG_CACHE_HOME=$work/cache $cli --profile $work/wang.li.toml read $study"
}
wait_trace() {  # until the trace has $2 lines matching $1
  for _ in $(seq 1 200); do
    n=$(grep -c "$1" "$trace" 2>/dev/null) || n=0
    [ "$n" -ge "$2" ] && return 0
    sleep 0.05
  done
  return 1
}

# First image, five launches on the cached study.
firsts=()
for run in 1 2 3 4 5; do
  rm -f "$trace"
  t0=$(date +%s%3N)
  launch
  wait_trace first_image_epoch_ms 1
  t1=$(awk '/first_image_epoch_ms/ {print $2}' "$trace")
  firsts+=($((t1 - t0)))
  tmux -S "$sock" send-keys -t reader q
  sleep 0.3
  tmux -S "$sock" kill-server 2>/dev/null || true
done

# Key presses: next image, one at a time (each waits for its redraw).
rm -f "$trace"
launch
wait_trace first_image_epoch_ms 1
tmux -S "$sock" send-keys -t reader g
wait_trace key_ms 1
for i in $(seq 1 "$keys"); do
  tmux -S "$sock" send-keys -t reader n
  wait_trace key_ms $((i + 1))
done
tmux -S "$sock" send-keys -t reader q
python3 - "$trace" "${firsts[*]}" "$count" <<'PY'
import statistics, sys
keys = sorted(float(l.split()[1]) for l in open(sys.argv[1]) if l.startswith("key_ms") and "drawn=1" in l)[1:]
firsts = sorted(int(x) for x in sys.argv[2].split())
def pct(v, p): return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
print(f"first image of a cached {sys.argv[3]}-image CT (launch -> drawn, ms): median {pct(firsts, 50)}  "
      f"min {firsts[0]}  max {firsts[-1]}  (target <= 300)")
print(f"key -> next 512x512 image drawn (ms), {len(keys)} keys: p50 {pct(keys, 50):.1f}  p95 {pct(keys, 95):.1f}  "
      f"max {keys[-1]:.1f}  (target p50 <= 30)")
PY
