#pragma once
// Checkpoints the index's WAL on a thread and connection of its own, so that the writer's COMMIT
// never copies pages into the database: SQLite's auto-checkpoint runs inside the COMMIT that
// takes the WAL past 1000 pages, and every write queued behind that batch waited for it (0.5-2.3
// ms each under the API bench, ~20 a second with 32 clients; the audit entry of each worklist
// view and claim waits for the next commit). Hooked on the writer connection in place of the
// auto-checkpoint: the hook (on the writer thread, after each commit) only notes the WAL's size
// and wakes the thread, which runs a PASSIVE checkpoint (it blocks neither the writer nor the
// readers; what it cannot copy yet, the next one does). Durability is the WAL's, as before.
//
// Thread-safety: constructed and destroyed by the writer connection's owner, with no write
// running; the hook runs on the writer's thread.
#include <sqlite3.h>

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace teleread {

class Database;

class WalCheckpointer {
 public:
  static constexpr int kPages = 1000;  // as SQLite's auto-checkpoint
  // `writer`: the connection whose commits fill the WAL of `db_path` (outlives this).
  // `before_each`: called on the thread before each checkpoint (tests hold it there).
  WalCheckpointer(const std::filesystem::path& db_path, sqlite3* writer, int pages = kPages,
                  std::function<void()> before_each = nullptr);
  ~WalCheckpointer();  // unhooks (the writer goes back to SQLite's auto-checkpoint), then joins
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  uint64_t checkpoints() const;  // run so far
  // Whether the thread has its connection; without one the writer keeps the auto-checkpoint.
  bool running() const { return thread_.joinable(); }

 private:
  static int Hook(void* self, sqlite3* db, const char* name, int pages);
  void Loop();

  sqlite3* writer_;
  const int pages_;
  const std::function<void()> before_each_;
  std::unique_ptr<Database> db_;  // the thread's own connection
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool due_ = false;        // guarded by mu_
  bool stopping_ = false;   // guarded by mu_
  uint64_t done_ = 0;       // guarded by mu_
  std::thread thread_;      // last: started once the rest is set
};

}  // namespace teleread
