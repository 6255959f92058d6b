#!/usr/bin/env bash
# Per-object timeline at one association: where the time between a small object's last byte in
# and its C-STORE-RSP out goes, and the sender's side. The receiver and storescu run under
# strace (--seccomp-bpf: only socket and storage calls stop, so the rest runs at full speed);
# ack_timeline.py then prints the median and p90 of each gap (server: response -> command in ->
# data in -> first storage call -> sync start -> sync -> response; sender: response in ->
# next command out -> data out). strace still slows every traced call: compare receivers
# measured the same way, not these figures with untraced runs.
# ACK_KIND=ct: CT objects (~0.5 MB) instead; ct_timeline.py then splits each object's time at its
# last data read and sums the storage calls between that read and the response, the part the sender
# waits for (the server only).
# Usage: tests/bench/ack_timeline.sh BUILD_DIR|storescp OUT_DIR [COUNT]   (default 300 small, 200 CT objects)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
kind=${ACK_KIND:-small}
case $kind in small | ct) ;; *) echo "ACK_KIND is small or ct" >&2; exit 2 ;; esac
default_count=300
[ "$kind" = ct ] && default_count=200
build=$1 out=$2 count=${3:-$default_count}
port=11197
calls=read,write,writev,pwrite64,fdatasync,fsync,openat,close,link,rename,renameat2,futex
mkdir -p "$out"
corpus=$out/corpus-$kind-$count
if [ ! -d "$corpus" ]; then
  maker=$build/samples/teleread-samples
  [ "$build" = storescp ] && maker=$root/build/samples/teleread-samples
  mkdir -p "$corpus"
  "$maker" corpus "$corpus" --kind "$kind" --count "$count" >/dev/null
fi
sed -e "s/^min_free_disk_mb = .*/min_free_disk_mb = 0/" "$root/config/teleread.toml" |
  awk '/^\[https\]/ { skip = 1 } skip && /^$/ { skip = 0 } !skip' >"$out/teleread.toml"
data=$out/data
rm -rf "$data"
mkdir -p "$data"
export TCP_NODELAY=1
receiver=("$build/server/teleread-server" --config "$out/teleread.toml" --storage "$data" --dicom-port $port
  --log-level warn)
[ "$build" = storescp ] && receiver=(storescp +xa --max-pdu 131072 -od "$data" -aet LX_READ $port)
strace -f -ttt -T -qq --seccomp-bpf -e trace=$calls -o "$out/server.strace" "${receiver[@]}" >"$out/server.log" 2>&1 &
pid=$!
trap 'kill $(pgrep -P $pid) 2>/dev/null || true' EXIT
for _ in $(seq 200); do echoscu -aet ZZ_PACS -aec LX_READ 127.0.0.1 $port >/dev/null 2>&1 && break; sleep 0.1; done
sync
t0=$(date +%s%N)
strace -f -ttt -T -qq --seccomp-bpf -e trace=read,write,writev -o "$out/sender.strace" \
  storescu -aet ZZ_PACS -aec LX_READ --max-pdu 131072 +sd +r 127.0.0.1 $port "$corpus" >"$out/storescu.log" 2>&1
t1=$(date +%s%N)
kill "$(pgrep -P $pid)" 2>/dev/null || true
wait $pid 2>/dev/null || true
trap - EXIT
echo "$build: $(((t1 - t0) / count / 1000)) us per object (traced)"
if [ "$kind" = ct ]; then
  python3 "$root/tests/bench/ct_timeline.py" "$out/server.strace"
else
  python3 "$root/tests/bench/ack_timeline.py" "$out"
fi
