#!/usr/bin/env bash
# Fault injection: SIGKILL teleread-server at a random moment while it ingests a push, accepts
# signed reports and delivers them to a member PACS; restart it and check that nothing
# acknowledged was lost, nothing is orphaned and nothing was delivered twice.
#
# Usage: tests/fault/fault_inject.sh [TRIALS]        (default 50, or $FAULT_TRIALS)
#
# Once per run: a scratch config made as tests/bench/report_delivery.sh makes its own (centre CA,
# server and wang.li certificates, the sample config with short quiet period and delivery retries,
# Zhuozhou's delivery port pointed at our member PACS), wang.li's CLI profile, and two corpora
# written by teleread-samples. Each trial, on fresh storage:
#   1. the member PACS plays Zhuozhou's (ZZ_PACS): Orthanc, which answers C-FIND as a hospital
#      PACS does, or with FAULT_MEMBER=storescp DCMTK's storescp, which cannot; teleread-server
#      starts; the base corpus (one instance per study) is pushed and waited for until every
#      study is a reading task;
#   2. at once: (a) storescu pushes the second corpus as ZZ_PACS, (b) the teleread CLI, as
#      wang.li, claims each base study and submits a signed report (`report new --submit`),
#      (c) the server delivers accepted reports to the member, which is, chosen at random: up;
#      slow (a second per report: Orthanc's Lua filter sleeps before storing it, storescp
#      --sleep-after 1 after answering, so a kill often falls between the member taking the
#      report and the server recording it as delivered); stalled (SIGSTOP: deliveries hang in
#      flight); or down;
#   3. after a random 0..FAULT_MAX_KILL_MS ms: SIGKILL. The server restarts (recovery), the member
#      is (back) up, the server runs until the outbox is empty, then stops cleanly;
#   4. checks, with sqlite3 on storage/index.sqlite and the file system:
#      - every object storescu saw acknowledged is indexed, and its data set is byte-identical
#        to the file sent;
#      - storage/objects/*/*.dcm plus the objects kept in the index (rows at "index:..." with their
#        object_data) and `SELECT path FROM instances` are the same set (no row without its data,
#        no file without its row); storage/tmp is empty after the restart;
#      - every report the CLI saw accepted has its row; every report row has its instance and
#        its delivery row; every delivery row is pending, delivered or dead, and in the end all
#        are delivered;
#      - the member holds exactly the delivered reports, nothing else; PRAGMA integrity_check is ok;
#      - no report reached the member twice (Orthanc's Lua filter logs every instance it receives;
#        storescp says "already exists, overwriting"). The server asks the member by C-FIND before
#        re-sending a report an earlier attempt may have delivered, so with Orthanc a second
#        transfer is a violation. storescp cannot answer, so there re-sends are counted and shown,
#        not failed (delivery is at least once), unless FAULT_STRICT_ONCE=1.
#
# Environment:
#   TELEREAD_BUILD_DIR  build with server/teleread-server, viewer/teleread and
#                       samples/teleread-samples (default: <repo>/build)
#   FAULT_WORK_DIR      scratch directory (default: a new one under ${TMPDIR:-/tmp}); removed at
#                       the end unless a trial failed or FAULT_KEEP=1
#   FAULT_SEED          seed of the random choices (default: from the clock; printed)
#   FAULT_MAX_KILL_MS   latest kill after the start of step 2 (default 2500)
#   FAULT_BASE_STUDIES  studies reported per trial (default 8)
#   FAULT_PUSH_COUNT    instances pushed in step 2 (default 300, over 6 studies)
#   FAULT_PUSH_KIND     teleread-samples corpus kind pushed in step 2 (default small; ct: ~0.5 MB
#                       objects, stored as files and written with direct I/O)
#   FAULT_SEGMENT_MB    centre.segment_mb (default 16: a CT push fills several segments; 0: a
#                       file per object)
#   FAULT_MEMBER        orthanc (default) or storescp
#   FAULT_SMALL_OBJECT_BYTES  centre.small_object_bytes (default: the sample config's 131072,
#                       so the ~9 kB pushed objects are kept in the index; 0: all files)
#
# Output: one line per trial, then the tally, whose last line is
#   "fault injection: T trials, K kills, V violations"
# Exit status: 0 no violation, 1 at least one violation, 2 the run could not be set up.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TELEREAD_BUILD_DIR:-$root/build}
trials=${1:-${FAULT_TRIALS:-50}}
seed=${FAULT_SEED:-$(( $(date +%s%N) % 32768 ))}
max_kill_ms=${FAULT_MAX_KILL_MS:-2500}
base_studies=${FAULT_BASE_STUDIES:-8}
push_count=${FAULT_PUSH_COUNT:-300}
member_kind=${FAULT_MEMBER:-orthanc}
strict_once=${FAULT_STRICT_ONCE:-$([ "$member_kind" = orthanc ] && echo 1 || echo 0)}
server=$build/server/teleread-server
cli=$build/viewer/teleread
samples=$build/samples/teleread-samples
export TCP_NODELAY=1  # DCMTK tools: Nagle off, as a tuned PACS runs
export LC_ALL=C.UTF-8  # one collation for sort, join and comm

die() { echo "fault_inject: $*" >&2; exit 2; }
[[ $trials =~ ^[0-9]+$ && $trials -ge 1 ]] || die "TRIALS must be a positive number, not '$trials'"
for b in "$server" "$cli" "$samples"; do [ -x "$b" ] || die "missing $b (build first, or set TELEREAD_BUILD_DIR)"; done
for t in storescu storescp echoscu dcmdump sqlite3 python3 timeout curl; do command -v "$t" >/dev/null || die "missing $t"; done
case $member_kind in
  orthanc) orthanc=$(command -v Orthanc || echo /usr/sbin/Orthanc); [ -x "$orthanc" ] || die "missing Orthanc" ;;
  storescp) ;;
  *) die "FAULT_MEMBER must be orthanc or storescp, not '$member_kind'" ;;
esac
# The system interpreter when there is one: a version manager's shim costs a second per call.
python=$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3)

work=${FAULT_WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/teleread-fault-XXXXXX")}
mkdir -p "$work" || die "cannot create $work"
export XDG_CACHE_HOME=$work/cache  # the CLI's report drafts
RANDOM=$seed

# Every live process started here, so that the exit trap stops them (and only them): a pid
# leaves the list as soon as it has been waited for.
pids=()
forget() {
  local keep=() p
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}
reap() {  # $1 pid: waits for it and forgets it
  [ -n "$1" ] || return 0
  wait "$1" 2>/dev/null
  forget "$1"
}
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r dicom_port http_port member_port member_http_port < <("$python" -c '
import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

# --- Once per run: PKI, config, profile, corpora --------------------------------------------
setup_log=$work/setup.log
. "$root/tests/lib/scratch_centre.sh"
scratch_pki "$work/pki" wang.li >"$setup_log" 2>&1 || die "pki failed, see $setup_log"
scratch_config "$work/pki" "$work/teleread.toml" "s|^port = 11201$|port = $member_port|" \
  "s|^delivery_max_attempts = .*|delivery_max_attempts = 1000|" \
  "s|^delivery_retry_seconds = .*|delivery_retry_seconds = 1|" \
  "s|^delivery_retry_max_seconds = .*|delivery_retry_max_seconds = 2|" \
  "s|^delivery_timeout_seconds = .*|delivery_timeout_seconds = 3|" \
  "s|^small_object_bytes = .*|small_object_bytes = ${FAULT_SMALL_OBJECT_BYTES:-131072}|" \
  "s|^segment_mb = .*|segment_mb = ${FAULT_SEGMENT_MB:-16}|"
grep -q "^port = $member_port$" "$work/teleread.toml" || die "could not point Zhuozhou's delivery at port $member_port"
"$server" --config "$work/teleread.toml" --check-config >>"$setup_log" 2>&1 || die "bad scratch config, see $setup_log"
scratch_profile "$work/pki" wang.li "$http_port" "$work/wang.li.toml"
"$samples" corpus "$work/base" --kind small --count "$base_studies" --studies "$base_studies" >>"$setup_log" 2>&1 ||
  die "corpus failed, see $setup_log"
"$samples" corpus "$work/push" --kind "${FAULT_PUSH_KIND:-small}" --count "$push_count" --studies 6 >>"$setup_log" 2>&1 ||
  die "corpus failed, see $setup_log"
# path -> SOP Instance UID, for reading storescu's acknowledgements (one dcmdump for them all).
find "$work/base" "$work/push" -type f -print0 | xargs -0 dcmdump -s +F +P 0008,0018 2>>"$setup_log" |
  awk '/^# dcmdump /{f=$NF} /^\(0008,0018\)/{u=$3; gsub(/[][]/, "", u); print f, u}' | sort >"$work/manifest"
[ "$(wc -l <"$work/manifest")" = $((base_studies + push_count)) ] || die "cannot read the corpora's SOP Instance UIDs"

# --- Helpers -----------------------------------------------------------------------------------
sql() { sqlite3 -cmd ".timeout 5000" "$1" "$2"; }

server_pid=""
start_server() {  # $1 storage, $2 log; waits until both listeners are up
  "$server" --config "$work/teleread.toml" --storage "$1" --dicom-port "$dicom_port" --http-port "$http_port" \
    --log-level info >"$2" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  local i
  for i in $(seq 1 300); do
    grep -q "HTTPS reading API on" "$2" 2>/dev/null && grep -q "DICOM listener" "$2" && return 0
    kill -0 "$server_pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

member_pid=""
start_member() {  # $1 directory, $2 "slow" to take a second over each report
  if [ "$member_kind" = orthanc ]; then
    {
      echo "function ReceivedInstanceFilter(dicom, origin, info)"
      echo "  print('teleread-fault received ' .. dicom.SOPInstanceUID)"
      [ "${2:-}" = slow ] && echo "  os.execute('sleep 1')"
      echo "  return true"
      echo "end"
    } >"$1.lua"
    cat >"$1.json" <<JSON
{ "Name": "ZZ_PACS", "StorageDirectory": "$1/storage", "IndexDirectory": "$1/index",
  "DicomServerEnabled": true, "DicomAet": "ZZ_PACS", "DicomPort": $member_port, "DicomCheckCalledAet": false,
  "DicomAlwaysAllowStore": true, "DicomAlwaysAllowEcho": true, "DicomAlwaysAllowFind": true,
  "LuaScripts": ["$1.lua"], "HttpServerEnabled": true, "HttpPort": $member_http_port,
  "RemoteAccessAllowed": false, "AuthenticationEnabled": false }
JSON
    "$orthanc" "$1.json" >>"$1.log" 2>&1 &
  else
    storescp $([ "${2:-}" = slow ] && echo --sleep-after 1) -aet ZZ_PACS -od "$1" "$member_port" >>"$1.log" 2>&1 &
  fi
  member_pid=$!
  pids+=("$member_pid")
  local i
  for i in $(seq 1 100); do
    echoscu -aec ZZ_PACS 127.0.0.1 "$member_port" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}

# The SOP Instance UIDs the member holds, one per line (repeated if held twice), while it runs.
member_holdings() {  # $1 member directory
  if [ "$member_kind" = orthanc ]; then
    curl -sS --fail --max-time 30 "http://127.0.0.1:$member_http_port/instances?expand" |
      "$python" -c 'import json, sys; [print(i["MainDicomTags"]["SOPInstanceUID"]) for i in json.load(sys.stdin)]'
  else
    ls "$1" | sed 's/^[A-Za-z]*\.//'  # storescp names a file <modality>.<SOP Instance UID>
  fi
}

# How many reports reached the member more than once, from its log.
member_resent() {  # $1 member log
  if [ "$member_kind" = orthanc ]; then
    grep -o "teleread-fault received [0-9.]*" "$1" 2>/dev/null | sort | uniq -c | awk '{n += $1 - 1} END {print n + 0}'
  else
    grep -c "already exists, overwriting" "$1" 2>/dev/null || true
  fi
}

stop_pid() {  # $1 pid, $2 signal; waits for it
  [ -n "$1" ] || return 0
  kill -CONT "$1" 2>/dev/null
  kill "-$2" "$1" 2>/dev/null
  reap "$1"
}

# storescu -v logs: the SOP Instance UIDs acknowledged with success.
acknowledged() {
  awk '/Sending file: /{f=$NF} /Received Store Response \(Success\)/{print f}' "$@" 2>/dev/null | sort -u |
    join - "$work/manifest" | awk '{print $2}' | sort -u
}

v() { violations+=("$*"); }

# --- Trials --------------------------------------------------------------------------------
echo "fault injection: $trials trial(s), seed $seed, kill within ${max_kill_ms} ms, member $member_kind, scratch $work"
total_violations=0 failed_trials=0 kills=0
k_ingest=0 k_reports=0 k_pending=0 m_up=0 m_slow=0 m_stalled=0 m_down=0
sum_acked=0 sum_reports=0 sum_delivered=0 sum_resent=0 sum_partial=0 sum_reindexed=0 sum_held=0 sum_asked=0

for trial in $(seq 1 "$trials"); do
  t=$work/trial-$trial
  storage=$t/storage member=$t/member
  mkdir -p "$t" "$member"
  violations=()

  case $(( RANDOM % 5 )) in
    0 | 1) mode=up ;;
    2) mode=slow ;;
    3) mode=stalled ;;
    4) mode=down ;;
  esac
  kill_ms=$(( (RANDOM * 32768 + RANDOM) % (max_kill_ms + 1) ))

  member_pid=""
  if [ "$mode" != down ]; then start_member "$member" "$mode" || die "$member_kind would not start (trial $trial)"; fi
  start_server "$storage" "$t/server.1.log" || die "teleread-server would not start (trial $trial), see $t/server.1.log"
  storescu -v -aet ZZ_PACS -aec LX_READ +sd +r 127.0.0.1 "$dicom_port" "$work/base" >"$t/storescu.base.log" 2>&1 ||
    die "pushing the base corpus failed (trial $trial), see $t/storescu.base.log"
  ready=0
  for _ in $(seq 1 200); do
    ready=$(sql "$storage/index.sqlite" "SELECT COUNT(*) FROM reading_tasks WHERE state = 'waiting'")
    [ "${ready:-0}" -ge "$base_studies" ] && break
    sleep 0.05
  done
  [ "${ready:-0}" -ge "$base_studies" ] || die "the base studies never became reading tasks (trial $trial)"
  studies=$(sql "$storage/index.sqlite" "SELECT st.study_instance_uid FROM studies st JOIN reading_tasks t ON
    t.study_pk = st.id WHERE t.state = 'waiting' ORDER BY st.id")

  # Step 2: everything at once, then the kill.
  [ "$mode" = stalled ] && kill -STOP "$member_pid"
  timeout 60 storescu -v -aet ZZ_PACS -aec LX_READ +sd +r 127.0.0.1 "$dicom_port" "$work/push" \
    >"$t/storescu.push.log" 2>&1 &
  push_pid=$!
  pids+=("$push_pid")
  (
    for uid in $studies; do
      # A failed claim ends the loop: after the kill every call fails; before it none may.
      timeout 20 "$cli" --profile "$work/wang.li.toml" claim "$uid" >/dev/null 2>&1 || { echo "claim failed $uid"; break; }
      timeout 30 "$cli" --profile "$work/wang.li.toml" report new "$uid" --findings "右肺上叶见一直径约8mm磨玻璃结节。" \
        --impression "磨玻璃结节，建议复查。" --submit 2>&1
    done
  ) >"$t/cli.log" 2>&1 &
  cli_pid=$!
  pids+=("$cli_pid")
  sleep "$(printf '%d.%03d' $(( kill_ms / 1000 )) $(( kill_ms % 1000 )))"
  in_ingest=0 in_reports=0
  kill -0 "$push_pid" 2>/dev/null && in_ingest=1
  kill -0 "$cli_pid" 2>/dev/null && in_reports=1
  pending_at_kill=$(sql "$storage/index.sqlite" "SELECT COUNT(*) FROM deliveries WHERE state = 'pending'" 2>/dev/null || echo "?")
  kill -KILL "$server_pid"
  # A kill counts only when the server died of it (not when it had already exited on its own).
  server_status=0
  wait "$server_pid" 2>/dev/null || server_status=$?
  forget "$server_pid"
  if [ "$server_status" = 137 ]; then
    kills=$((kills + 1))
  else
    v "the server was not killed by SIGKILL (exit status $server_status): it had ended before the kill"
  fi
  reap "$push_pid"
  reap "$cli_pid"
  reports_at_kill=$(grep -c '^submitted ' "$t/cli.log")
  # The CLI finished before the kill: every claim must have succeeded.
  [ "$in_reports" = 0 ] && grep -q '^claim failed' "$t/cli.log" &&
    v "a claim failed while the server was up: $(grep -m1 '^claim failed' "$t/cli.log")"

  # Step 3: restart with the member up; run until the outbox is empty.
  start_server "$storage" "$t/server.2.log" || die "teleread-server would not restart (trial $trial), see $t/server.2.log"
  [ -z "$(ls -A "$storage/tmp")" ] || v "storage/tmp not empty after the restart: $(ls "$storage/tmp" | head -3 | tr '\n' ' ')"
  case $mode in
    stalled) kill -CONT "$member_pid" ;;
    down) start_member "$member" || die "$member_kind would not start (trial $trial)" ;;
  esac
  # One report after the restart, so that every trial delivers at least one (a kill at 0 ms may
  # come before the first submission) and the reporting path is known to work after recovery.
  after_uid=$(sql "$storage/index.sqlite" "SELECT st.study_instance_uid FROM studies st JOIN reading_tasks t ON
    t.study_pk = st.id WHERE t.state IN ('waiting', 'claimed') ORDER BY st.id LIMIT 1")
  reports_after=0
  if [ -n "$after_uid" ]; then
    { timeout 20 "$cli" --profile "$work/wang.li.toml" claim "$after_uid" &&
      timeout 30 "$cli" --profile "$work/wang.li.toml" report new "$after_uid" --findings "复查：结节同前。" \
        --impression "磨玻璃结节，建议复查。" --submit; } >>"$t/cli.log" 2>&1
    reports_after=$(( $(grep -c '^submitted ' "$t/cli.log") - reports_at_kill ))
    [ "$reports_after" = 1 ] || v "no report could be submitted after the restart: $(tail -1 "$t/cli.log")"
  fi
  left=1
  for _ in $(seq 1 300); do
    left=$(sql "$storage/index.sqlite" "SELECT COUNT(*) FROM deliveries WHERE state <> 'delivered'")
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  sleep 0.3  # a late duplicate would show now
  stop_pid "$server_pid" TERM
  member_holdings "$member" | sort >"$t/member.uids" || v "cannot list what the member holds"
  stop_pid "$member_pid" TERM
  server_pid="" member_pid=""

  # Step 4: the checks.
  db=$storage/index.sqlite
  acknowledged "$t/storescu.base.log" "$t/storescu.push.log" >"$t/acked"
  sql "$db" "SELECT sop_instance_uid FROM instances ORDER BY 1" | sort >"$t/indexed"
  lost=$(comm -23 "$t/acked" "$t/indexed" | wc -l)
  [ "$lost" = 0 ] || v "$lost acknowledged object(s) not indexed, e.g. $(comm -23 "$t/acked" "$t/indexed" | head -1)"
  differs=$(sql "$db" "SELECT sop_instance_uid || ' ' || path FROM instances" | sort | join - <(awk '{print $2, $1}' \
    "$work/manifest" | sort) | join - "$t/acked" | "$python" -c '
import sys
import sqlite3
db = sqlite3.connect("file:" + sys.argv[1] + "/index.sqlite?mode=ro", uri=True)
def stored(path):  # a file, a range of a segment, or the bytes kept in the index
    if path.startswith("segments/"):
        name, place = path.rsplit("@", 1)
        offset, length = (int(x) for x in place.split("+"))
        with open(sys.argv[1] + "/" + name, "rb") as f:
            f.seek(offset)
            return f.read(length)
    if not path.startswith("index:"): return open(sys.argv[1] + "/" + path, "rb").read()
    row = db.execute("SELECT d.bytes FROM instances i JOIN object_data d ON d.instance_id = i.id "
                     "WHERE i.path = ?", (path,)).fetchone()
    return row[0] if row else b""
def data_set(b):
    if b[128:132] != b"DICM": return None
    return b[144 + int.from_bytes(b[140:144], "little"):]
bad = [l.split()[0] for l in sys.stdin
       if data_set(stored(l.split()[1])) != data_set(open(l.split()[2], "rb").read())]
print(len(bad), *bad[:1])' "$storage")
  [ "${differs%% *}" = 0 ] || v "${differs%% *} acknowledged object(s) stored with other bytes, e.g. ${differs#* }"
  sql "$db" "SELECT path FROM instances" | sort >"$t/rows"
  # A segment row has its data when its range lies within its segment.
  { (cd "$storage" && find objects -type f -name '*.dcm')
    sql "$db" "SELECT i.path FROM instances i JOIN object_data d ON d.instance_id = i.id"
    sql "$db" "SELECT path FROM instances WHERE path LIKE 'segments/%'" | while IFS= read -r p; do
      f=${p%@*} r=${p##*@}
      s=$(stat -c %s "$storage/$f" 2>/dev/null) && [ $((${r%+*} + ${r#*+})) -le "$s" ] && echo "$p"
    done; } | sort >"$t/files"
  in_index=$(sql "$db" "SELECT COUNT(*) FROM object_data")
  # The pushed objects are small: with the tier on, they must have taken it.
  [ "${FAULT_SMALL_OBJECT_BYTES:-131072}" = 0 ] || [ "${in_index:-0}" -gt 0 ] || v "no object was kept in the index"
  in_segments=$(sql "$db" "SELECT COUNT(*) FROM instances WHERE path LIKE 'segments/%'")
  # Large objects: with segments on, those acknowledged must have gone there (a kill before the
  # first one leaves none).
  [ "${FAULT_PUSH_KIND:-small}" != ct ] || [ "${FAULT_SEGMENT_MB:-16}" = 0 ] || [ "${in_segments:-0}" -gt 0 ] ||
    [ "$(wc -l <"$t/acked")" -le "$base_studies" ] || v "no object was stored in a segment"
  no_file=$(comm -23 "$t/rows" "$t/files" | wc -l)
  no_row=$(comm -13 "$t/rows" "$t/files" | wc -l)
  [ "$no_file" = 0 ] || v "$no_file index row(s) without their data, e.g. $(comm -23 "$t/rows" "$t/files" | head -1)"
  [ "$no_row" = 0 ] || v "$no_row object file(s) without a row, e.g. $(comm -13 "$t/rows" "$t/files" | head -1)"
  stray=$(cd "$storage" && find objects -type f ! -name '*.dcm' | wc -l)
  [ "$stray" = 0 ] || v "$stray stray file(s) under objects/"
  [ -z "$(ls -A "$storage/tmp")" ] || v "storage/tmp not empty after the clean stop"
  prep=$(find "$storage" -path '*/segments/*.prep' 2>/dev/null | wc -l)
  [ "$prep" = 0 ] || v "$prep segment(s) left half-prepared after the clean stop"
  [ "$(sql "$db" "PRAGMA integrity_check")" = ok ] || v "index integrity_check failed"

  sed -n 's/^submitted \([0-9.]*\) for study.*/\1/p' "$t/cli.log" | sort -u >"$t/reports.acked"
  sql "$db" "SELECT sop_instance_uid FROM reports" | sort >"$t/reports"
  r_lost=$(comm -23 "$t/reports.acked" "$t/reports" | wc -l)
  [ "$r_lost" = 0 ] || v "$r_lost accepted report(s) missing, e.g. $(comm -23 "$t/reports.acked" "$t/reports" | head -1)"
  r_no_instance=$(sql "$db" "SELECT COUNT(*) FROM reports WHERE sop_instance_uid NOT IN (SELECT sop_instance_uid FROM instances)")
  [ "$r_no_instance" = 0 ] || v "$r_no_instance report row(s) without their instance"
  r_no_delivery=$(sql "$db" "SELECT COUNT(*) FROM reports WHERE sop_instance_uid NOT IN (SELECT sop_instance_uid FROM deliveries)")
  [ "$r_no_delivery" = 0 ] || v "$r_no_delivery report(s) without a delivery row"
  # Each report's PDF copy came with it (the same transaction): indexed and queued for delivery.
  r_no_pdf=$(sql "$db" "SELECT COUNT(*) FROM reports WHERE pdf_sop_instance_uid = '' OR pdf_sop_instance_uid NOT IN
    (SELECT sop_instance_uid FROM instances) OR pdf_sop_instance_uid NOT IN (SELECT sop_instance_uid FROM deliveries)")
  [ "$r_no_pdf" = 0 ] || v "$r_no_pdf report(s) without their PDF copy's instance or delivery row"
  d_orphan=$(sql "$db" "SELECT COUNT(*) FROM deliveries WHERE report_sop_instance_uid NOT IN
    (SELECT sop_instance_uid FROM reports)")
  [ "$d_orphan" = 0 ] || v "$d_orphan delivery row(s) without a report"
  d_bad=$(sql "$db" "SELECT COUNT(*) FROM deliveries WHERE state NOT IN ('pending', 'delivered', 'dead')")
  [ "$d_bad" = 0 ] || v "$d_bad delivery row(s) in an unknown state"
  d_undelivered=$(sql "$db" "SELECT COUNT(*) FROM deliveries WHERE state <> 'delivered'")
  [ "$d_undelivered" = 0 ] || v "$d_undelivered report(s) still not delivered with the member up: $(sql "$db" \
    "SELECT state || ' after ' || attempts || ' attempt(s): ' || last_error FROM deliveries WHERE state <> 'delivered' LIMIT 1")"
  sql "$db" "SELECT sop_instance_uid FROM deliveries WHERE state = 'delivered'" | sort >"$t/delivered"
  m_missing=$(comm -23 "$t/delivered" "$t/member.uids" | wc -l)
  m_extra=$(comm -13 "$t/delivered" "$t/member.uids" | wc -l)
  m_dupes=$(uniq -d "$t/member.uids" | wc -l)
  [ "$m_missing" = 0 ] || v "$m_missing delivered report(s) not at the member, e.g. $(comm -23 "$t/delivered" "$t/member.uids" | head -1)"
  [ "$m_extra" = 0 ] || v "$m_extra object(s) at the member that are no delivered report, e.g. $(comm -13 "$t/delivered" \
    "$t/member.uids" | head -1)"
  [ "$m_dupes" = 0 ] || v "$m_dupes report(s) held twice by the member"
  resent=$(member_resent "$member.log")
  resent=${resent:-0}
  [ "$strict_once" = 1 ] && [ "$resent" != 0 ] && v "$resent report(s) sent to the member twice"

  recovery=$(grep -o "recovery: removed [0-9]* partial file(s), re-indexed [0-9]* object(s), quarantined [0-9]* unattributed" \
    "$t/server.2.log" | head -1)
  partial=$(sed -n 's/recovery: removed \([0-9]*\) partial.*/\1/p' <<<"$recovery")
  reindexed=$(sed -n 's/.*re-indexed \([0-9]*\) object.*/\1/p' <<<"$recovery")
  # Re-sends the C-FIND spared (the member held the report), and retries that could not ask.
  held=$(grep -c "was already held by" "$t/server.1.log" "$t/server.2.log" | awk -F: '{n += $2} END {print n + 0}')
  asked=$(grep -c "an earlier attempt may have reached it" "$t/server.1.log" "$t/server.2.log" |
    awk -F: '{n += $2} END {print n + 0}')
  sum_held=$((sum_held + held)) sum_asked=$((sum_asked + asked))
  acked_n=$(wc -l <"$t/acked")
  delivered_n=$(wc -l <"$t/delivered")
  # "Nothing lost" means little if nothing was read as acknowledged: the base corpus was pushed
  # and answered before the kill, so all of it must be in storescu's log.
  [ "$acked_n" -ge "$base_studies" ] || v "only $acked_n object(s) read as acknowledged (at least $base_studies expected)"
  [ $((reports_at_kill + reports_after)) -ge 1 ] || v "no report was accepted in this trial"
  [ "$delivered_n" -ge $((reports_at_kill + reports_after)) ] ||
    v "$delivered_n report(s) delivered of $((reports_at_kill + reports_after)) accepted"

  points=()
  [ "$in_ingest" = 1 ] && points+=(ingest) && k_ingest=$((k_ingest + 1))
  [ "$in_reports" = 1 ] && points+=(reports) && k_reports=$((k_reports + 1))
  [ "$pending_at_kill" != "?" ] && [ "$pending_at_kill" -gt 0 ] && points+=("deliveries:$pending_at_kill") &&
    k_pending=$((k_pending + 1))
  [ ${#points[@]} -gt 0 ] || points+=(idle)
  case $mode in up) m_up=$((m_up + 1)) ;; slow) m_slow=$((m_slow + 1)) ;; stalled) m_stalled=$((m_stalled + 1)) ;; down) m_down=$((m_down + 1)) ;; esac
  sum_acked=$((sum_acked + acked_n)) sum_reports=$((sum_reports + reports_at_kill + reports_after))
  sum_delivered=$((sum_delivered + delivered_n)) sum_resent=$((sum_resent + resent))
  sum_partial=$((sum_partial + ${partial:-0})) sum_reindexed=$((sum_reindexed + ${reindexed:-0}))

  line=$(printf 'trial %d/%d: member %-7s kill at %4d ms during %-30s acked %2d/%d objects (%d in the index), %d/%d reports accepted; recovery %s partial, %s re-indexed; delivered %d, re-sent %d, found held %d' \
    "$trial" "$trials" "$mode" "$kill_ms" "$(IFS=+; echo "${points[*]}")" "$acked_n" $((base_studies + push_count)) \
    "${in_index:-0}" "$reports_at_kill" "$base_studies" "${partial:-0}" "${reindexed:-0}" "$delivered_n" "$resent" "$held")
  if [ ${#violations[@]} -eq 0 ]; then
    echo "$line: ok"
    [ "${FAULT_KEEP:-0}" = 1 ] || rm -rf "$t"
  else
    echo "$line: VIOLATION"
    printf '    - %s\n' "${violations[@]}"
    echo "    (kept in $t)"
    total_violations=$((total_violations + ${#violations[@]}))
    failed_trials=$((failed_trials + 1))
  fi
done

echo "kill points: during ingest $k_ingest, during report submission $k_reports, with deliveries pending $k_pending;" \
  "member up $m_up, slow $m_slow, stalled $m_stalled, down $m_down"
echo "totals: $sum_acked objects acknowledged, $sum_reports reports accepted, $sum_delivered delivered" \
  "($sum_resent re-sent after a kill; $sum_held found held by the member's C-FIND and not re-sent; $sum_asked" \
  "retries could not ask, the member having no C-FIND); recovery removed $sum_partial partial file(s), re-indexed $sum_reindexed object(s);" \
  "$failed_trials trial(s) with violations"
echo "fault injection: $trials trials, $kills kills, $total_violations violations"
if [ "$total_violations" = 0 ] && [ "${FAULT_KEEP:-0}" != 1 ] && [ -z "${FAULT_WORK_DIR:-}" ]; then rm -rf "$work"; fi
[ "$total_violations" = 0 ]
