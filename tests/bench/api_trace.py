#!/usr/bin/env python3
"""Where the slowest requests of an api_load.sh run spent their time (API_TRACE=1).

Reads the server log: "phase NAME" lines (written by api_load.sh before each measurement) and
the trace lines of server/http/request_trace.h. For each phase and route, prints the median of
each field over all requests and over the slowest 1 % (by the server's total), in microseconds.
Usage: tests/bench/api_trace.py var/bench-api/server.log
"""
import re
import statistics
import sys
from collections import defaultdict

phase = "before"
rows = defaultdict(list)  # (phase, route) -> [dict of fields]
field = re.compile(r"(\w+)=(\S+)")
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("phase "):
        phase = line.split()[1]
        continue
    at = line.find("trace ")
    if at < 0:
        continue
    words = line[at:].split()
    route = words[1] + " " + re.sub(r"/studies/[^/]+/", "/studies/*/", words[2])
    values = {k: v for k, v in field.findall(line[at:])}
    rows[(phase, route)].append(values)

for (ph, route), rs in sorted(rows.items()):
    if len(rs) < 100:
        continue
    rs.sort(key=lambda r: int(r["total"]))
    tail = rs[-max(1, len(rs) // 100):]
    keys = [k for k in rs[0] if k not in ("page", "bytes")]
    print(f"{ph} {route}: n={len(rs)} server p99 total={int(rs[int(len(rs) * 0.99) - 1]['total'])} us")
    for name, group in (("all", rs), ("slowest 1%", tail)):
        med = {k: int(statistics.median(int(r[k]) for r in group)) for k in keys}
        mean = {k: int(statistics.mean(int(r[k]) for r in group)) for k in keys}
        print(f"  {name:10} median: " + " ".join(f"{k}={med[k]}" for k in keys))
        print(f"  {name:10} mean:   " + " ".join(f"{k}={mean[k]}" for k in keys))
    pages = defaultdict(int)
    for r in tail:
        pages[r.get("page", "-")] += 1
    print("  slowest 1% pages: " + " ".join(f"{k}:{v}" for k, v in sorted(pages.items())))
