#!/usr/bin/env python3
"""Per CT object, from ack_timeline.sh's server strace (ACK_KIND=ct): the time receiving (first to last
data read on the association's socket) and the tail from the last read to the response, with the
storage calls made in that tail summed by name, per object. Microseconds; medians."""
import re, sys, statistics as st
from collections import Counter, defaultdict
pat = re.compile(r'^(\d+)\s+(\d+\.\d+) (\w+)\((\d+)?.*\) += (-?\d+).*<(\d+\.\d+)>$')
ev = []
for line in open(sys.argv[1]):
    m = pat.match(line.strip())
    if m:
        pid, t, name, fd, ret, dur = m.groups()
        ev.append((int(pid), float(t), name, int(fd) if fd else -1, int(ret), float(dur)))
reads = Counter((p, fd) for p, t, n, fd, r, du in ev if n == 'read' and r > 60000)
if not reads:
    sys.exit('no large data set reads in ' + sys.argv[1])
(tid, sock), _ = reads.most_common(1)[0]
objs, cur = [], None
for p, t, n, fd, r, du in ev:
    if p != tid:
        continue
    if n == 'read' and fd == sock and r > 0:
        cur = cur or {'first': t}
        cur['last'] = t + du
        cur['tail'] = []  # only what follows the last read
    elif cur and n in ('writev', 'write') and fd == sock:
        cur['resp'] = t
        objs.append(cur)
        cur = None
    elif cur:
        cur['tail'].append((n, r, du))
if not objs:
    sys.exit('no responses found')
tail = defaultdict(float)
count = Counter()
for o in objs:
    for n, r, du in o['tail']:
        key = 'write (>=4 KiB)' if n == 'write' and r >= 4096 else n
        tail[key] += du
        count[key] += 1
cycle = [b['resp'] - a['resp'] for a, b in zip(objs, objs[1:])]
print(f"objects {len(objs)}: cycle {st.median(cycle) * 1e6:.0f} us, receiving {st.median([o['last'] - o['first'] for o in objs]) * 1e6:.0f}, "
      f"last read -> response {st.median([o['resp'] - o['last'] for o in objs]) * 1e6:.0f}")
for key in sorted(tail, key=lambda k: -tail[k]):
    print(f"  in the tail: {key:16s} {tail[key] / len(objs) * 1e6:7.1f} us per object  ({count[key] / len(objs):.2f} calls)")
