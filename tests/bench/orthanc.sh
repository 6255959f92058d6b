# Orthanc as the comparison server of the C-FIND latency benchmark. Source it; it only defines
# functions. Progress goes to stderr; values a caller captures (a PID, seconds) go to stdout.
#   source tests/bench/orthanc.sh
#   teleread-bench-corpus files "$work/studies" --studies 20000
#   orthanc_install
#   pid=$(orthanc_start "$work/orthanc" 11290 18042)
#   orthanc_load "$work/studies" 11290
#   teleread-find-latency --port 11290 --aec ORTHANC --query patient-id --value P0000042
#   orthanc_stop "$pid"

orthanc_install() {
  command -v Orthanc >/dev/null 2>&1 && return 0
  # Lists may be missing on a fresh machine; update only when the plain install fails.
  DEBIAN_FRONTEND=noninteractive apt-get install -y orthanc >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y orthanc >&2; }
}

orthanc_start() {  # DIR DICOM_PORT HTTP_PORT -> PID on stdout
  local dir=$1 dicom_port=$2 http_port=$3
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  # Our own config, not /etc/orthanc: only the keys our AEs need, plus the one find setting
  # Orthanc documents as its fastest ("StorageAccessOnFind": "Never" answers from the SQLite index
  # alone; every key the benchmark asks for is a main DICOM tag or computed from the index, so the
  # answers are the same as with the default "Always"). Everything else keeps Orthanc's defaults.
  cat >"$dir/orthanc.json" <<EOF
{
  "Name" : "bench",
  "StorageDirectory" : "$dir/storage",
  "IndexDirectory" : "$dir/index",
  "DicomServerEnabled" : true,
  "DicomAet" : "ORTHANC",
  "DicomPort" : $dicom_port,
  "DicomCheckCalledAet" : false,
  "DicomAlwaysAllowEcho" : true,
  "DicomAlwaysAllowStore" : true,
  "DicomAlwaysAllowFind" : true,
  "HttpServerEnabled" : true,
  "HttpPort" : $http_port,
  "RemoteAccessAllowed" : false,
  "AuthenticationEnabled" : false,
  "StorageAccessOnFind" : "Never"
}
EOF
  # Orthanc has no config key for Nagle on its DICOM sockets ("TcpNoDelay" is HTTP only); it
  # accepts through Debian's DCMTK, which disables Nagle only when TCP_NODELAY=1 is in the
  # environment. Without it each C-FIND pays delayed-ACK stalls (~40 ms).
  TCP_NODELAY=1 Orthanc "$dir/orthanc.json" </dev/null >"$dir/orthanc.log" 2>&1 &
  local pid=$!
  local _
  for _ in $(seq 600); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "orthanc_start: Orthanc exited; last lines of $dir/orthanc.log:" >&2
      tail -n 20 "$dir/orthanc.log" >&2
      return 1
    fi
    if TCP_NODELAY=1 echoscu -aet BENCH -aec ORTHANC 127.0.0.1 "$dicom_port" >/dev/null 2>&1; then
      echo "$pid"
      return 0
    fi
    sleep 0.1
  done
  echo "orthanc_start: no C-ECHO answer on port $dicom_port after 60 s" >&2
  kill "$pid" 2>/dev/null
  return 1
}

orthanc_stop() {  # PID
  local pid=$1 _
  kill -TERM "$pid" 2>/dev/null || return 0
  # The caller may not be Orthanc's parent (started from $(...)), so poll instead of wait.
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "orthanc_stop: $pid still running after 30 s; killing it" >&2
  kill -KILL "$pid" 2>/dev/null
  return 0
}

orthanc_load() {  # DIR_OF_DICOM_FILES DICOM_PORT -> elapsed seconds on stdout
  local dir=$1 port=$2
  local -a parts=()
  local d
  for d in "$dir"/*/; do [ -d "$d" ] && parts+=("${d%/}"); done
  [ ${#parts[@]} -eq 0 ] && parts=("$dir")
  local senders=4
  [ ${#parts[@]} -lt $senders ] && senders=${#parts[@]}
  local log
  log=$(mktemp -d)
  local t0 t1 k
  local -a pids=()
  t0=$(date +%s%N)
  for ((k = 0; k < senders; k++)); do
    # Subdirectories are dealt round-robin so the senders never share a file.
    local -a mine=()
    local j
    for ((j = k; j < ${#parts[@]}; j += senders)); do mine+=("${parts[j]}"); done
    TCP_NODELAY=1 storescu -aet BENCH -aec ORTHANC +sd +r 127.0.0.1 "$port" "${mine[@]}" >"$log/$k.log" 2>&1 &
    pids+=($!)
  done
  local failed=0
  for k in "${!pids[@]}"; do
    wait "${pids[k]}" || failed=1
    # storescu exits 0 when single C-STOREs are refused; its errors and warnings say so.
    grep -q '^[EF]:' "$log/$k.log" && failed=1
  done
  t1=$(date +%s%N)
  if [ $failed -ne 0 ]; then
    echo "orthanc_load: storescu reported errors:" >&2
    grep -h '^[EWF]:' "$log"/*.log | head -n 20 >&2
    rm -rf "$log"
    return 1
  fi
  rm -rf "$log"
  awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f\n", ns / 1e9 }'
}
