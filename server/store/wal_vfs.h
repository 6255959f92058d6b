#pragma once
// A VFS over SQLite's "unix" one that gathers a WAL file's contiguous writes and issues them as
// one write: SQLite writes each WAL frame as two writes (its 24-byte header, then the page), about
// 18 system calls for a small object's commit. Private to store/.
//
// Nothing written is observable before it reaches the file: the gathered bytes go out when a
// commit frame's page is written (so an error fails that write, and with it the commit, whatever
// the synchronous mode), and before any other call on the WAL file (read, sync, size, truncate,
// close, file control) or a non-contiguous write, and at the database file's xShmBarrier (SQLite
// calls it while publishing the wal-index header to other connections), and before the WAL write lock
// is released (a rolled-back transaction's spilled frames). A database opened with psow=0 is refused.
#include <cstdint>

namespace teleread {

// The VFS's name for sqlite3_open_v2; registered (not as the default) on the first call.
// nullptr when it cannot be registered: SQLite's default VFS is used then.
const char* WalGatheringVfs();

// For tests.
struct WalVfsCounters {
  uint64_t wal_writes = 0;   // xWrite calls SQLite made on WAL files
  uint64_t wal_flushes = 0;  // writes issued to the file beneath for them
  uint64_t wal_bytes = 0;    // bytes issued
  uint64_t wal_frames = 0;   // WAL frames written (commit frames included)
  uint64_t wal_commits = 0;  // commit frames written
  uint64_t wal_syncs = 0;    // xSync calls on WAL files
};
WalVfsCounters WalVfsCountersNow();
// The next `count` flushes fail with `sqlite_error` (e.g. SQLITE_IOERR_WRITE or SQLITE_FULL),
// nothing written.
void WalVfsFailFlushes(int count, int sqlite_error);

}  // namespace teleread
