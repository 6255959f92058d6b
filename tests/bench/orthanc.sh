# Orthanc as the comparison server of the C-FIND latency benchmark. Source it; it only defines
# functions. Progress goes to stderr; values a caller captures (a PID, seconds) go to stdout.
#   source tests/bench/orthanc.sh
#   bench_make_studies "$work/studies" 20000
#   orthanc_install
#   pid=$(orthanc_start "$work/orthanc" 11290 18042)
#   orthanc_load "$work/studies" 11290
#   teleread-find-latency --port 11290 --aec ORTHANC --query patient-id --value PID0000042
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

# Writes COUNT one-instance studies (64x64 16-bit, ~9 kB) under OUT/part0..part3/, the same bytes
# on every run. Study i (0-based), patient p = int(i / 2) (two studies a patient):
#   PatientName  SURNAME[p % 20] "^WEI" p, SURNAME = ZHANG WANG LI LIU CHEN YANG HUANG ZHAO WU ZHOU
#                XU SUN MA ZHU HU GUO HE LIN GAO LUO
#   PatientID    sprintf("PID%07d", p); PatientBirthDate 1940+p%60 "0101"; PatientSex p%2 ? F : M
#   StudyDate    2024-01-01 plus (i * 7919) % 366 days (every day of 2024 once per 366 studies)
#   StudyTime    sprintf("%02d%02d%02d", 8 + i%10, (i*7)%60, (i*13)%60)
#   Modality     i%3 == 2 ? MR (MR Image Storage, "MR BRAIN") : CT (CT Image Storage, "CT CHEST")
#   AccessionNumber sprintf("ACC%07d", i); StudyID "1"; SeriesNumber 1; InstanceNumber 1
#   StudyInstanceUID sprintf("2.25.4242%012d", i); series UID study ".1"; SOP Instance UID study ".1.1"
# One perl process writes them all: a DCMTK tool per file (dump2dcm) costs ~20 ms each in start-up.
bench_make_studies() {  # OUT COUNT
  local out=$1 count=$2
  mkdir -p "$out"/part{0,1,2,3}
  perl -e '
    use strict; use warnings;
    my ($out, $count) = @ARGV;
    my @surname = qw(ZHANG WANG LI LIU CHEN YANG HUANG ZHAO WU ZHOU XU SUN MA ZHU HU GUO HE LIN GAO LUO);
    my @month_days = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31);
    my %sop_class = (CT => "1.2.840.10008.5.1.4.1.1.2", MR => "1.2.840.10008.5.1.4.1.1.4");
    my $explicit_le = "1.2.840.10008.1.2.1";
    my $pixels = pack("v*", map { ($_ * 7) & 0xfff } 0 .. 64 * 64 - 1);
    # Explicit VR little endian element; values padded to even length as DICOM requires.
    sub el {
      my ($g, $e, $vr, $v) = @_;
      $v .= ($vr eq "UI" || $vr eq "OB") ? "\0" : " " if length($v) % 2;
      return pack("vva2v", $g, $e, $vr, 0) . pack("V", length $v) . $v if $vr =~ /^(OB|OW)$/;
      return pack("vva2v", $g, $e, $vr, length $v) . $v;
    }
    sub date_of_day {
      my $d = shift; my $m = 0;
      while ($d >= $month_days[$m]) { $d -= $month_days[$m]; $m++; }
      return sprintf("2024%02d%02d", $m + 1, $d + 1);
    }
    for my $i (0 .. $count - 1) {
      my $p = int($i / 2);
      my $mod = $i % 3 == 2 ? "MR" : "CT";
      my $study = sprintf("2.25.4242%012d", $i);
      my $sop = "$study.1.1";
      my $meta = el(2, 1, "OB", "\0\1") . el(2, 2, "UI", $sop_class{$mod}) . el(2, 3, "UI", $sop)
        . el(2, 0x10, "UI", $explicit_le) . el(2, 0x12, "UI", "2.25.4242.1") . el(2, 0x13, "SH", "TELEREAD_BENCH");
      my $ds = el(8, 0x16, "UI", $sop_class{$mod}) . el(8, 0x18, "UI", $sop)
        . el(8, 0x20, "DA", date_of_day(($i * 7919) % 366))
        . el(8, 0x30, "TM", sprintf("%02d%02d%02d", 8 + $i % 10, ($i * 7) % 60, ($i * 13) % 60))
        . el(8, 0x50, "SH", sprintf("ACC%07d", $i)) . el(8, 0x60, "CS", $mod) . el(8, 0x90, "PN", "")
        . el(8, 0x1030, "LO", $mod eq "MR" ? "MR BRAIN" : "CT CHEST")
        . el(0x10, 0x10, "PN", $surname[$p % 20] . "^WEI$p") . el(0x10, 0x20, "LO", sprintf("PID%07d", $p))
        . el(0x10, 0x30, "DA", sprintf("%04d0101", 1940 + $p % 60)) . el(0x10, 0x40, "CS", $p % 2 ? "F" : "M")
        . el(0x20, 0xd, "UI", $study) . el(0x20, 0xe, "UI", "$study.1") . el(0x20, 0x10, "SH", "1")
        . el(0x20, 0x11, "IS", "1") . el(0x20, 0x13, "IS", "1")
        . el(0x28, 2, "US", pack("v", 1)) . el(0x28, 4, "CS", "MONOCHROME2")
        . el(0x28, 0x10, "US", pack("v", 64)) . el(0x28, 0x11, "US", pack("v", 64))
        . el(0x28, 0x100, "US", pack("v", 16)) . el(0x28, 0x101, "US", pack("v", 12))
        . el(0x28, 0x102, "US", pack("v", 11)) . el(0x28, 0x103, "US", pack("v", 0))
        . el(0x7fe0, 0x10, "OW", $pixels);
      my $file = sprintf("%s/part%d/S%07d.dcm", $out, $i % 4, $i);
      open(my $fh, ">:raw", $file) or die "$file: $!\n";
      print $fh "\0" x 128, "DICM", el(2, 0, "UL", pack("V", length $meta)), $meta, $ds;
      close($fh) or die "$file: $!\n";
    }
  ' "$out" "$count"
}
