#!/usr/bin/env python3
# Splits a perf profile of teleread-server (tests/bench/cpu_profile.sh) into the components of
# ingesting a small object, by the first marker frame found in each sample's stack, and gives
# each one's share and, from the CPU per object given, its microseconds per object.
# Usage: perf_components.py PERF_DATA [CPU_US_PER_OBJECT]
import collections
import subprocess
import sys

data = sys.argv[1]
rules = [  # (component, any of these frames in the stack) checked in order
 ('writer: checkpoint', ['sqlite3WalCheckpoint']),
 ('writer: COMMIT fdatasync', ['fdatasync']),
 ('writer: COMMIT WAL frames write', ['sqlite3WalFrames']),
 ('writer: COMMIT other', ['teleread::Transaction::Commit']),
 ('writer: InsertInstance', ['teleread::Index::InsertInstance']),
 ('writer: savepoint/begin/other', ['teleread::Index::CommitBatch', 'teleread::Index::LeadBatch']),
 ('parse: DeflatedForDcmtk (a refused object only)', ['teleread::dicom_scan::DeflatedForDcmtk']),
 ('parse: ScanElements/ReadLayout', ['teleread::dicom_scan::ScanElements', 'teleread::dicom_scan::ReadLayout']),
 ('parse: DCMTK ReadInPlace', ['teleread::dicom_scan::ReadInPlace']),
 ('parse: DCMTK read of a file (ReadFileNoInflate)', ['teleread::dicom_scan::ReadFileNoInflate']),
 ('parse: Summarize', ['teleread::Summarize']),
 ('parse: other/free', ['teleread::ReadInstanceSummaryFromMemory']),
 ('parse: file, other/free', ['teleread::ReadInstanceSummary']),
 ('ingest: wait for the batch (futex)', ['teleread::Index::RunWrite']),
 ('ingest: object name (SHA-256)', ['teleread::ObjectStore::InIndexPathFor']),
 ('ingest: Place (fsync, link, directory fsync)', ['teleread::ObjectStore::Place']),
 ('ingest: other', ['teleread::Ingest::Store']),
 ('dimse: receive command', ['DIMSE_receiveCommand']),
 ('dimse: data set to the file (DirectFile)', ['teleread::DirectFile::']),
 ('dimse: receive data set', ['teleread::ReceiveDataSet']),
 ('dimse: send response', ['DIMSE_sendStoreResponse', 'teleread::SendStoreResponse']),
 ('assoc: FreeBytes statvfs', ['teleread::ObjectStore::FreeBytes']),
 ('assoc: other', ['teleread::RunAssociation']),
]
p = subprocess.Popen(['perf', 'script', '-i', data, '-F', 'tid,ip,sym'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
counts = collections.Counter(); total = 0
stack = []
def flush():
    global total
    if not stack: return
    total += 1
    s = '\n'.join(stack)
    for name, marks in rules:
        if any(m in s for m in marks):
            counts[name] += 1; return
    counts['other (kernel irq/softirq, idle threads)'] += 1
for line in p.stdout:
    if not line.strip():
        flush(); stack = []; continue
    if line[0] not in ' \t':
        flush(); stack = []; continue
    stack.append(line.strip())
flush()
cpu = float(sys.argv[2]) if len(sys.argv) > 2 else None
print(f'samples {total}')
for name, _ in rules + [('other (kernel irq/softirq, idle threads)', 0)]:
    c = counts[name]
    pct = 100.0 * c / total
    us = f'{cpu * c / total:6.1f} us/obj' if cpu else ''
    print(f'{name:48s} {pct:5.1f}% {us}')
