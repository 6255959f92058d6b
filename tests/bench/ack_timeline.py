#!/usr/bin/env python3
"""Gaps per object from ack_timeline.sh's two strace files (see there): median and p90, microseconds."""
import re, sys, statistics as st
from collections import Counter
d = sys.argv[1]
pat = re.compile(r'^(?:(\d+)\s+)?(\d+\.\d+) (\w+)\((\d+)?.*= (-?\d+).*<(\d+\.\d+)>$')
def load(path):
    ev = []
    for line in open(path):
        m = pat.match(line.strip())
        if not m: continue
        pid, t, name, fd, ret, dur = m.groups()
        ev.append((int(pid or 0), float(t), name, int(fd) if fd else -1, int(ret), float(dur)))
    return ev
ev = load(d + '/server.strace')
# the association thread and socket: most writev/write of a 162-byte response... use reads of >8000 bytes
data_reads = Counter((p, fd) for p, t, n, fd, r, du in ev if n == 'read' and 8000 < r < 9500)
if not data_reads:
    sys.exit('no ~9 kB data set reads in ' + d + '/server.strace')
(tid, sockfd), _ = data_reads.most_common(1)[0]
th = [e for e in ev if e[0] == tid]
keys = ['resp_end->cmd_in', 'cmd_in->data_in', 'data_in->first_disk', 'first_disk->sync_start', 'sync', 'sync_end->resp_start', 'data_in->resp_start', 'cycle']
gaps = {k: [] for k in keys}
last_resp = None; got = 0; obj = {}
for p, t, n, fd, r, du in th:
    end = t + du
    if n in ('read', 'recvfrom') and fd == sockfd and r > 0:
        got += r
        if 'cmd' not in obj and got >= 162:
            obj['cmd'] = end
            if last_resp: gaps['resp_end->cmd_in'].append(end - last_resp)
        if 'data' not in obj and got >= 162 + 8000:
            obj['data'] = end; gaps['cmd_in->data_in'].append(end - obj['cmd'])
        continue
    if 'data' in obj and fd != sockfd and n in ('pwrite64', 'write', 'openat', 'fdatasync', 'fsync', 'rename', 'renameat2'):
        if 'disk' not in obj:
            obj['disk'] = t; gaps['data_in->first_disk'].append(t - obj['data'])
        if n in ('fdatasync', 'fsync'):
            if 'fs' not in obj:
                obj['fs'] = t; gaps['first_disk->sync_start'].append(t - obj['disk'])
            obj['fse'] = end; obj['fsdur'] = obj.get('fsdur', 0) + du
    if n in ('writev', 'write', 'sendto') and fd == sockfd and 'data' in obj:
        if 'fse' in obj:
            gaps['sync'].append(obj['fsdur']); gaps['sync_end->resp_start'].append(t - obj['fse'])
        gaps['data_in->resp_start'].append(t - obj['data'])
        if last_resp: gaps['cycle'].append(end - last_resp)
        last_resp = end; obj = {}; got = 0
for k in keys:
    v = gaps[k]
    if v: print(f"server {k:28s} n={len(v):4d} median {st.median(v)*1e6:6.0f} us  p90 {sorted(v)[int(len(v)*0.9)]*1e6:6.0f}")
sev = load(d + '/sender.strace')
sfd = Counter(fd for p, t, n, fd, r, du in sev if n == 'write' and 8000 < r < 9500).most_common(1)[0][0]
g2 = {k: [] for k in ['resp_in->cmd_write', 'cmd_write->data_write_end', 'data_write_end->resp_in']}
got = 0; rr = None; cw = None; dw = None
for p, t, n, fd, r, du in sev:
    if fd != sfd: continue
    if n == 'read' and r > 0:
        got += r
        if got >= 162 and rr is None:
            rr = t + du
            if dw: g2['data_write_end->resp_in'].append(rr - dw)
    elif n in ('write', 'writev'):
        if cw is None and rr is not None:
            cw = t; g2['resp_in->cmd_write'].append(t - rr)
        if r > 1000 and cw is not None:
            dw = t + du; g2['cmd_write->data_write_end'].append(dw - cw); cw = None; rr = None; got = 0
for k, v in g2.items():
    if v: print(f"sender {k:28s} n={len(v):4d} median {st.median(v)*1e6:6.0f} us")
