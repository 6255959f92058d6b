#include "server/store/wal_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

namespace teleread {
namespace {

constexpr int kWalHeaderBytes = 32;
constexpr int kFrameHeaderBytes = 24;
// The unix VFS writes at most 128 KiB - 1 bytes per call (seekAndWrite masks the length with
// 0x1ffff): gathered bytes go out in pieces of at most this, and as soon as they reach it.
constexpr size_t kMaxPending = 124 * 1024;

std::atomic<uint64_t> g_wal_writes{0}, g_wal_flushes{0}, g_wal_bytes{0}, g_wal_frames{0}, g_wal_commits{0},
    g_wal_syncs{0};
std::atomic<int> g_fail_flushes{0};
std::atomic<int> g_fail_code{SQLITE_IOERR_WRITE};

sqlite3_vfs* g_base = nullptr;  // "unix"

struct ShimFile {
  sqlite3_file base;  // pMethods: &kMethods, or null when the open failed
  sqlite3_file* real = nullptr;
  bool is_wal = false;
  const char* key = nullptr;  // a main database file: its name as the registry knows it
  ShimFile* wal = nullptr;    // a main database file: its connection's WAL file, when open
  ShimFile* main = nullptr;   // a WAL file: its connection's main database file
  // A WAL file: bytes at [pending_offset, pending_offset + pending.size()) not yet written.
  std::string pending;
  sqlite3_int64 pending_offset = 0;
  // End of what this connection wrote since it last wrote the WAL header (a new generation of
  // the WAL begins there): writes at this offset are appends and gathered, others go through.
  sqlite3_int64 extent = 0;
  sqlite3_int64 commit_page_offset = -1;  // the page after a commit frame's header goes here
  int deferred_error = SQLITE_OK;         // a flush at xShmBarrier failed: the next call reports it
};

constexpr size_t RealOffset() { return (sizeof(ShimFile) + 15) & ~size_t{15}; }

ShimFile* Shim(sqlite3_file* f) { return reinterpret_cast<ShimFile*>(f); }

// Main database files by the name pointer SQLite's pager passed to xOpen: the pager's WAL name
// is stored after it, so sqlite3_filename_database(wal name) finds the same pointer.
std::mutex g_registry_mutex;
std::unordered_map<const char*, ShimFile*>& Registry() {
  static auto* registry = new std::unordered_map<const char*, ShimFile*>();
  return *registry;
}

int Flush(ShimFile* f) {
  if (f->deferred_error != SQLITE_OK) {
    int rc = f->deferred_error;
    f->deferred_error = SQLITE_OK;
    return rc;
  }
  f->commit_page_offset = -1;
  if (f->pending.empty()) return SQLITE_OK;
  int rc = SQLITE_OK;
  int fail = g_fail_flushes.load(std::memory_order_relaxed);
  if (fail > 0 && g_fail_flushes.compare_exchange_strong(fail, fail - 1)) {
    rc = g_fail_code.load(std::memory_order_relaxed);
  } else {
    for (size_t done = 0; done < f->pending.size() && rc == SQLITE_OK; done += kMaxPending) {
      const size_t piece = std::min(kMaxPending, f->pending.size() - done);
      rc = f->real->pMethods->xWrite(f->real, f->pending.data() + done, static_cast<int>(piece),
                                     f->pending_offset + static_cast<sqlite3_int64>(done));
      g_wal_flushes.fetch_add(1, std::memory_order_relaxed);
      g_wal_bytes.fetch_add(piece, std::memory_order_relaxed);
    }
  }
  f->pending.clear();
  if (f->pending.capacity() > 4 * kMaxPending) f->pending.shrink_to_fit();
  return rc;
}

int WalWrite(ShimFile* f, const void* data, int amount, sqlite3_int64 offset) {
  g_wal_writes.fetch_add(1, std::memory_order_relaxed);
  if (f->deferred_error != SQLITE_OK) return Flush(f);
  const auto* bytes = static_cast<const unsigned char*>(data);
  const bool frame_header = amount == kFrameHeaderBytes && offset >= kWalHeaderBytes;
  // Bytes 4-7 of a frame header: the database size after a commit, 0 in other frames.
  const bool commit = frame_header && (bytes[4] | bytes[5] | bytes[6] | bytes[7]) != 0;
  if (frame_header) g_wal_frames.fetch_add(1, std::memory_order_relaxed);
  if (commit) g_wal_commits.fetch_add(1, std::memory_order_relaxed);
  if (offset == 0 && amount == kWalHeaderBytes) {  // a new generation of the WAL
    if (int rc = Flush(f); rc != SQLITE_OK) return rc;
    f->extent = 0;
  }
  if (offset != f->extent) {
    // Rewrites inside the WAL (checksums, a page written twice), and appends after another
    // connection's frames: written through.
    if (int rc = Flush(f); rc != SQLITE_OK) return rc;
    if (offset + amount > f->extent) f->extent = offset + amount;
    if (commit) f->commit_page_offset = offset + kFrameHeaderBytes;
    return f->real->pMethods->xWrite(f->real, data, amount, offset);
  }
  if (f->pending.empty()) {
    f->pending_offset = offset;
    if (f->pending.capacity() == 0) f->pending.reserve(64 * 1024);  // not for read-only handles
  }
  f->pending.append(reinterpret_cast<const char*>(data), static_cast<size_t>(amount));
  f->extent = offset + amount;
  if (commit) f->commit_page_offset = offset + kFrameHeaderBytes;
  if (frame_header) return SQLITE_OK;
  // The commit frame is complete: written now, so that a failure fails the commit.
  if (offset == f->commit_page_offset || f->pending.size() >= kMaxPending) return Flush(f);
  return SQLITE_OK;
}

// --- io methods: everything passes to the real file, a WAL file's gathered bytes first. ---

int Close(sqlite3_file* file) {
  ShimFile* f = Shim(file);
  int rc = f->is_wal ? Flush(f) : SQLITE_OK;
  {
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    if (f->is_wal && f->main != nullptr) f->main->wal = nullptr;
    if (!f->is_wal) {
      if (f->wal != nullptr) f->wal->main = nullptr;
      if (f->key != nullptr) {
        auto it = Registry().find(f->key);
        if (it != Registry().end() && it->second == f) Registry().erase(it);
      }
    }
  }
  int close_rc = f->real->pMethods->xClose(f->real);
  f->~ShimFile();
  return rc != SQLITE_OK ? rc : close_rc;
}

int Read(sqlite3_file* file, void* data, int amount, sqlite3_int64 offset) {
  ShimFile* f = Shim(file);
  if (f->is_wal) {
    if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  }
  return f->real->pMethods->xRead(f->real, data, amount, offset);
}

int Write(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset) {
  ShimFile* f = Shim(file);
  if (f->is_wal) return WalWrite(f, data, amount, offset);
  return f->real->pMethods->xWrite(f->real, data, amount, offset);
}

int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  ShimFile* f = Shim(file);
  if (f->is_wal) {
    if (int rc = Flush(f); rc != SQLITE_OK) return rc;
    if (size < f->extent) f->extent = size;
  }
  return f->real->pMethods->xTruncate(f->real, size);
}

int Sync(sqlite3_file* file, int flags) {
  ShimFile* f = Shim(file);
  if (f->is_wal) {
    if (int rc = Flush(f); rc != SQLITE_OK) return rc;
    g_wal_syncs.fetch_add(1, std::memory_order_relaxed);
  }
  return f->real->pMethods->xSync(f->real, flags);
}

int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  ShimFile* f = Shim(file);
  if (f->is_wal) {
    if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  }
  return f->real->pMethods->xFileSize(f->real, size);
}

int Lock(sqlite3_file* file, int level) { return Shim(file)->real->pMethods->xLock(Shim(file)->real, level); }
int Unlock(sqlite3_file* file, int level) { return Shim(file)->real->pMethods->xUnlock(Shim(file)->real, level); }
int CheckReservedLock(sqlite3_file* file, int* out) {
  return Shim(file)->real->pMethods->xCheckReservedLock(Shim(file)->real, out);
}

int FileControl(sqlite3_file* file, int op, void* arg) {
  ShimFile* f = Shim(file);
  if (f->is_wal) {
    if (int rc = Flush(f); rc != SQLITE_OK) return rc;
  }
  return f->real->pMethods->xFileControl(f->real, op, arg);
}

int SectorSize(sqlite3_file* file) { return Shim(file)->real->pMethods->xSectorSize(Shim(file)->real); }
int DeviceCharacteristics(sqlite3_file* file) {
  return Shim(file)->real->pMethods->xDeviceCharacteristics(Shim(file)->real);
}

int ShmMap(sqlite3_file* file, int region, int size, int extend, void volatile** out) {
  sqlite3_file* real = Shim(file)->real;
  if (real->pMethods->iVersion < 2 || real->pMethods->xShmMap == nullptr) return SQLITE_IOERR_SHMMAP;
  return real->pMethods->xShmMap(real, region, size, extend, out);
}
// Slot 0 is SQLite's WAL write lock. A rolled-back transaction leaves gathered frames (a cache
// spill) past mxFrame, and the next writer, maybe another connection, appends at that same offset:
// they are written while the lock is still held, or dropped if that fails. A barrier's deferred
// error is kept for the call it belongs to.
int ShmLock(sqlite3_file* file, int offset, int n, int flags) {
  ShimFile* f = Shim(file);
  if ((flags & SQLITE_SHM_UNLOCK) != 0 && offset == 0 && f->wal != nullptr) {
    ShimFile* wal = f->wal;
    const int deferred = wal->deferred_error;
    wal->deferred_error = SQLITE_OK;
    Flush(wal);
    wal->pending.clear();
    wal->deferred_error = deferred;
  }
  return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}
// SQLite publishes the wal-index header to other connections around this barrier: the frames it
// describes must be in the WAL file first.
void ShmBarrier(sqlite3_file* file) {
  ShimFile* f = Shim(file);
  if (f->wal != nullptr) {
    int rc = Flush(f->wal);
    if (rc != SQLITE_OK) f->wal->deferred_error = rc;
  }
  f->real->pMethods->xShmBarrier(f->real);
}
int ShmUnmap(sqlite3_file* file, int remove) { return Shim(file)->real->pMethods->xShmUnmap(Shim(file)->real, remove); }
int Fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** out) {
  sqlite3_file* real = Shim(file)->real;
  if (real->pMethods->iVersion < 3 || real->pMethods->xFetch == nullptr) {
    *out = nullptr;
    return SQLITE_OK;
  }
  return real->pMethods->xFetch(real, offset, amount, out);
}
int Unfetch(sqlite3_file* file, sqlite3_int64 offset, void* p) {
  sqlite3_file* real = Shim(file)->real;
  if (real->pMethods->iVersion < 3 || real->pMethods->xUnfetch == nullptr) return SQLITE_OK;
  return real->pMethods->xUnfetch(real, offset, p);
}

const sqlite3_io_methods kMethods = {
    3,
    Close,
    Read,
    Write,
    Truncate,
    Sync,
    FileSize,
    Lock,
    Unlock,
    CheckReservedLock,
    FileControl,
    SectorSize,
    DeviceCharacteristics,
    ShmMap,
    ShmLock,
    ShmBarrier,
    ShmUnmap,
    Fetch,
    Unfetch,
};

int Open(sqlite3_vfs*, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  auto* f = new (file) ShimFile();
  f->base.pMethods = nullptr;
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + RealOffset());
  int rc = g_base->xOpen(g_base, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK || f->real->pMethods == nullptr) {
    if (f->real->pMethods != nullptr) f->real->pMethods->xClose(f->real);
    f->~ShimFile();
    file->pMethods = nullptr;
    return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
  }
  // Commits are recognised by their frame header, written whole only with powersafe overwrite
  // (without it SQLite splits padding frames at the sync point): refused.
  if ((flags & SQLITE_OPEN_MAIN_DB) != 0 &&
      (!sqlite3_uri_boolean(name, "psow", 1) ||
       (f->real->pMethods->xDeviceCharacteristics(f->real) & SQLITE_IOCAP_POWERSAFE_OVERWRITE) == 0)) {
    f->real->pMethods->xClose(f->real);
    f->~ShimFile();
    file->pMethods = nullptr;
    return SQLITE_CANTOPEN;
  }
  f->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
  if (name != nullptr) {
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    if (flags & SQLITE_OPEN_MAIN_DB) {
      f->key = name;
      Registry()[name] = f;
    } else if (f->is_wal) {
      auto it = Registry().find(sqlite3_filename_database(name));
      if (it != Registry().end() && it->second->wal == nullptr) {
        f->main = it->second;
        it->second->wal = f;
      }
    }
  }
  f->base.pMethods = &kMethods;
  return SQLITE_OK;
}

sqlite3_vfs g_vfs;

}  // namespace

const char* WalGatheringVfs() {
  static const char* name = []() -> const char* {
    g_base = sqlite3_vfs_find("unix");
    if (g_base == nullptr) return nullptr;
    g_vfs = *g_base;
    g_vfs.szOsFile = static_cast<int>(RealOffset()) + g_base->szOsFile;
    g_vfs.pNext = nullptr;
    g_vfs.zName = "teleread-wal";
    g_vfs.xOpen = Open;
    if (sqlite3_vfs_register(&g_vfs, 0) != SQLITE_OK) return nullptr;
    return g_vfs.zName;
  }();
  return name;
}

WalVfsCounters WalVfsCountersNow() {
  WalVfsCounters c;
  c.wal_writes = g_wal_writes.load();
  c.wal_flushes = g_wal_flushes.load();
  c.wal_bytes = g_wal_bytes.load();
  c.wal_frames = g_wal_frames.load();
  c.wal_commits = g_wal_commits.load();
  c.wal_syncs = g_wal_syncs.load();
  return c;
}

void WalVfsFailFlushes(int count, int sqlite_error) {
  g_fail_code.store(sqlite_error);
  g_fail_flushes.store(count);
}

}  // namespace teleread
