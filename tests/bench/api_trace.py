#!/usr/bin/env python3
"""Where the slowest requests of an api_load.sh run spent their time (API_TRACE=1).

Reads the server log: "phase NAME" lines (written by api_load.sh before each measurement), the
trace lines of server/http/request_trace.h, and the index's batch lines (with the checkpoint their COMMIT ran). For each
phase and route: the median and mean of each stage over all requests and over the slowest 1 %
(by the server's total, in microseconds), which stage was the largest in each slow one, and how
many of them (and of the others) overlapped a commit of the index's writer over 1 ms.
Usage: tests/bench/api_trace.py var/bench-api/server.log
"""
import datetime
import re
import statistics
import sys
from collections import Counter, defaultdict

field = re.compile(r"(\w+)=(\S+)")


def at_us(line):
    return datetime.datetime.fromisoformat(line[:23]).timestamp() * 1e6


phase = "before"
rows = defaultdict(list)  # (phase, route) -> [fields]
batches = defaultdict(list)  # phase -> [fields, with start and end]
checkpoints = defaultdict(list)
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("phase "):
        phase = line.split()[1]
        continue
    if "index batch " in line:
        b = {k: int(v) for k, v in field.findall(line.split("index batch ")[1])}
        b["end"] = at_us(line)
        b["start"] = b["end"] - b["run"] - b["commit"]
        batches[phase].append(b)
        if b.get("checkpoint", -1) >= 0:  # the commit ran SQLite's auto-checkpoint
            checkpoints[phase].append(b["checkpoint"])
        continue
    at = line.find(" trace ")
    if at < 0:
        continue
    words = line[at:].split()
    route = words[1] + " " + re.sub(r"/studies/[^/]+/", "/studies/*/", words[2])
    values = {k: v for k, v in field.findall(line[at:])}
    values["end"] = at_us(line)
    values["start"] = values["end"] - int(values["total"])
    rows[(phase, route)].append(values)

for ph, bs in batches.items():
    commits = sorted(b["commit"] for b in bs)
    print(f"{ph}: {len(bs)} writer batches, {statistics.mean(b['n'] for b in bs):.1f} writes each, commit p50="
          f"{commits[len(commits) // 2]} p99={commits[int(len(commits) * 0.99)]} max={commits[-1]} us, "
          f"{sum(c > 1000 for c in commits)} over 1 ms, of which "
          f"{sum(b['commit'] > 1000 and b.get('checkpoint', -1) >= 0 for b in bs)} ran a checkpoint; "
          f"{len(checkpoints[ph])} checkpoints (max {max(checkpoints[ph], default=0)} us)")

stages = ("queue", "handler", "post", "write")
for (ph, route), rs in sorted(rows.items()):
    if len(rs) < 100:
        continue
    rs.sort(key=lambda r: int(r["total"]))
    cut = max(1, len(rs) // 100)
    tail, rest = rs[-cut:], rs[:-cut]
    keys = [k for k in rs[0] if k not in ("page", "bytes", "start", "end")]
    print(f"{ph} {route}: n={len(rs)} server p99 total={int(rs[int(len(rs) * 0.99) - 1]['total'])} us")
    for name, group in (("all", rs), ("slowest 1%", tail)):
        med = {k: int(statistics.median(int(r[k]) for r in group)) for k in keys}
        mean = {k: int(statistics.mean(int(r[k]) for r in group)) for k in keys}
        print(f"  {name:10} median: " + " ".join(f"{k}={med[k]}" for k in keys))
        print(f"  {name:10} mean:   " + " ".join(f"{k}={mean[k]}" for k in keys))
    largest = Counter(max(stages, key=lambda s: int(r[s])) for r in tail)
    print("  slowest 1%, largest stage: " + " ".join(f"{k}:{v}" for k, v in largest.most_common()))
    slow = [b for b in batches[ph] if b["commit"] > 1000]

    def overlaps(r):
        return any(b["end"] >= r["start"] - 1000 and b["start"] <= r["end"] + 1000 for b in slow)

    if slow:
        sample = rest[:: max(1, len(rest) // 2000)]
        print(f"  overlapping a commit over 1 ms: slowest 1% {100 * sum(map(overlaps, tail)) / len(tail):.0f} %, "
              f"the others {100 * sum(map(overlaps, sample)) / len(sample):.0f} %")
