#!/usr/bin/env python3
# Which b-tree each page a commit writes belongs to: WAL frames per commit, by table or index.
# Usage: tests/bench/wal_pages.py DB_COPY WAL_COPY  (copies of storage/index.sqlite and its -wal
# taken while the server ingests; the copy of the index is opened, so copy, never the live files).
# Only the frames since the WAL last restarted (the last checkpoint) are counted.
import sqlite3, struct, sys, collections
db, wal = sys.argv[1], sys.argv[2]
data = open(wal, 'rb').read()
magic, ver, psz, seq, s1, s2 = struct.unpack('>IIIIII', data[:24])
con = sqlite3.connect(db)
owner = {}
try:
    for name, pageno, ptype in con.execute("SELECT name, pageno, pagetype FROM dbstat"):
        owner[pageno] = name + ('' if ptype in ('leaf', 'internal') else ':' + ptype) + (':int' if ptype == 'internal' else '')
except Exception as e:
    print('dbstat:', e)
off, frames, commits = 32, 0, 0
per = collections.Counter(); cur = collections.Counter(); commit_frames = []
n_in_commit = 0
while off + 24 + psz <= len(data):
    pg, csz, fs1, fs2 = struct.unpack('>IIII', data[off:off+16])
    if (fs1, fs2) != (s1, s2): break
    frames += 1; n_in_commit += 1
    per[owner.get(pg, 'page1' if pg == 1 else 'free/new')] += 1
    if csz:
        commits += 1; commit_frames.append(n_in_commit); n_in_commit = 0
    off += 24 + psz
print('frames', frames, 'commits', commits, 'frames/commit %.2f' % (frames / max(commits, 1)))
for k, v in per.most_common(): print('%6d %5.2f/commit %s' % (v, v / max(commits, 1), k))
