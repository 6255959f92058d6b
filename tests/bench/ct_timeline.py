#!/usr/bin/env python3
"""Per CT object, from ack_timeline.sh's server strace (ACK_KIND=ct): the time receiving (first to last
data read on the association's socket) and the tail from the last read to the response, with the
storage calls that began in that tail summed by name, per object (any thread's: a group commit may
be led by another). Microseconds; medians."""
import re, sys, statistics as st
from collections import Counter, defaultdict
done = re.compile(r'^(\d+)\s+(\d+\.\d+) (\w+)\((\d+)?.*\) += (-?\d+).*<(\d+\.\d+)>$')
started = re.compile(r'^(\d+)\s+(\d+\.\d+) (\w+)\((\d+)?.*<unfinished \.\.\.>$')
resumed = re.compile(r'^(\d+)\s+\d+\.\d+ <\.\.\. (\w+) resumed>.*= (-?\d+).*<(\d+\.\d+)>$')
ev, open_calls = [], {}
for line in open(sys.argv[1]):
    line = line.strip()
    if m := done.match(line):
        pid, t, name, fd, ret, dur = m.groups()
    elif m := started.match(line):
        open_calls[m.group(1)] = m.groups()[1:]
        continue
    elif (m := resumed.match(line)) and m.group(1) in open_calls:
        t, name, fd = open_calls.pop(m.group(1))
        pid, ret, dur = m.group(1), m.group(3), m.group(4)
    else:
        continue
    ev.append((int(pid), float(t), name, int(fd) if fd else -1, int(ret), float(dur)))
ev.sort(key=lambda e: e[1])
reads = Counter((p, fd) for p, t, n, fd, r, du in ev if n == 'read' and r > 60000)
if not reads:
    sys.exit('no large data set reads in ' + sys.argv[1])
(tid, sock), _ = reads.most_common(1)[0]
objs, cur = [], None
for p, t, n, fd, r, du in ev:
    if p == tid and n == 'read' and fd == sock and r > 0:
        cur = cur or {'first': t, 'bytes': 0}
        cur['last'] = t + du
        cur['bytes'] += r
        cur['tail'] = []  # only what follows the last read
    elif cur and p == tid and n in ('writev', 'write') and fd == sock:
        cur['resp'] = t
        if cur['bytes'] > 60000:  # an object, not the association's negotiation or release
            objs.append(cur)
        cur = None
    elif cur and fd != sock and (p == tid or n != 'futex'):  # another thread's futex: idle waiting
        cur['tail'].append((n if p == tid else n + ' (other thread)', r, du))
if len(objs) < 2:
    sys.exit('fewer than two objects found')
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
    print(f"  in the tail: {key:28s} {tail[key] / len(objs) * 1e6:7.1f} us per object  ({count[key] / len(objs):.2f} calls)")
