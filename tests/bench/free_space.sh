# Sourced by the ingest benchmarks: every cell keeps what it stored until the next run (deleting at
# once slows the next cell's file creation), so a long series can fill the disk, and a full disk
# turns a benchmark into a full-disk test. Each cell first checks for room.
# require_free_space DIR BYTES: stops the run when DIR's file system has less than BYTES free.
require_free_space() {
  local avail
  avail=$(df --output=avail -B1 "$1" 2>/dev/null | tail -1 | tr -d ' ')
  [ -n "$avail" ] || return 0  # df cannot tell: no check
  if [ "$avail" -lt "$2" ]; then
    echo "stopped: $(($avail / 1000000)) MB free under $1, a cell needs about $(($2 / 1000000)) MB;" \
      "delete older benchmark directories (their trash/ keeps every cell's data)" >&2
    exit 3
  fi
}
