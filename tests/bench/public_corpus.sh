# Real-world DICOM files that no one here made, for ingest.sh (sourced; needs $build, $work, $port,
# start_server): the examples Debian ships with python3-pydicom, libgdcm and dicom3tools, mixed
# modalities, transfer syntaxes (JPEG, JPEG 2000, RLE, deflated, big endian) and quirks. Those that the
# server stores are copied until there are COUNT, each copy with a new SOP Instance UID (dcmodify), so
# that every copy is a new object and not a re-send.
public_sources() {
  find /usr/lib/python3/dist-packages/pydicom/data /usr/share/doc/libgdcm3.0/examples \
    /usr/share/doc/dicom3tools/examples -name '*.dcm' 2>/dev/null | sort
}

public_corpus() {  # dir count
  local dir=$1 count=$2 scratch=$work/public-scratch
  rm -rf "$scratch"
  mkdir -p "$scratch/src" "$dir"
  local n=0 f
  while read -r f; do
    cp "$f" "$scratch/src/$n-$(basename "$f")"
    n=$((n + 1))
  done < <(public_sources)
  [ "$n" -gt 0 ] || { echo "no public DICOM files found (scripts/install-deps.sh installs python3-pydicom)" >&2; return 1; }
  # Several examples share one SOP Instance UID (variants of one image): new UIDs first. Files that
  # dcmodify cannot read are broken on purpose; they go.
  for f in "$scratch"/src/*; do dcmodify -nb -q -ie -gin "$f" >/dev/null 2>&1 || rm -f "$f"; done
  # Which the server stores: the others are of SOP classes it refuses, or not valid enough to send.
  local pid
  pid=$(start_server teleread "$scratch/data")
  dcmsend -aet ZZ_PACS -aec LX_READ -nh -dn -q +sd +r 127.0.0.1 "$port" "$scratch/src" >/dev/null 2>&1 || true
  kill "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  sqlite3 "$scratch/data/index.sqlite" "SELECT sop_instance_uid FROM instances" | sort >"$scratch/stored"
  local kept=()
  for f in "$scratch"/src/*; do
    local uid
    uid=$(dcmdump -q +P 0008,0018 "$f" 2>/dev/null | sed -n 's/^[^[]*\[\([^]]*\)\].*/\1/p' | head -1)
    [ -n "$uid" ] && grep -qxF "$uid" "$scratch/stored" && kept+=("$f")
  done
  [ "${#kept[@]}" -gt 0 ] || { echo "the server stored none of the public files" >&2; return 1; }
  local made=0 copy=0
  while [ "$made" -lt "$count" ]; do
    copy=$((copy + 1))
    for f in "${kept[@]}"; do
      [ "$made" -lt "$count" ] || break
      cp "$f" "$dir/$copy-$(basename "$f")"
      made=$((made + 1))
    done
  done
  find "$dir" -name '*.dcm' -print0 | xargs -0 -n 200 dcmodify -nb -q -gin >/dev/null 2>&1
  echo "public corpus: ${#kept[@]} of $n example files stored by the server, $count objects" >&2
  rm -rf "$scratch"
}
