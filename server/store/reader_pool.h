#pragma once
// Idle read-only connections kept for the next read. Opening one and reading the schema cost
// more than a selective query itself, and a kept connection keeps its page cache. WAL: a kept
// connection still sees every commit made after it was opened, since each read starts a new
// snapshot; so a connection goes back to the pool only with no statement running on it.
//
// Thread-safety: Take from any thread; each PooledReader is used by one thread at a time.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <vector>

#include "common/status.h"

namespace teleread {

class Database;
class ReaderPool;

// Gives the connection back to its pool (or closes it) when the PooledReader goes.
struct ReturnToPool {
  std::shared_ptr<ReaderPool> pool;
  uint64_t statistics = 0;  // the statistics epoch it was taken in
  void operator()(Database* db) const;
};
using PooledReader = std::unique_ptr<Database, ReturnToPool>;

class ReaderPool : public std::enable_shared_from_this<ReaderPool> {
 public:
  // Keeps at most `max_idle` connections open between reads. `statistics`, when given, is bumped
  // whenever the index's statistics change: SQLite reads them when a connection reads the schema,
  // so a connection opened before is closed rather than used again with the old ones.
  using StatisticsEpoch = std::shared_ptr<const std::atomic<uint64_t>>;
  static std::shared_ptr<ReaderPool> Create(std::filesystem::path db_path, size_t max_idle,
                                            StatisticsEpoch statistics = nullptr);
  ~ReaderPool();
  // An idle connection, or a new one when none is idle.
  Result<PooledReader> Take();
  size_t idle() const;

 private:
  friend struct ReturnToPool;
  ReaderPool(std::filesystem::path db_path, size_t max_idle, StatisticsEpoch statistics);
  // Keeps it if it is idle, of the current statistics and there is room, else closes it.
  void Give(Database* db, uint64_t statistics);
  // With mu_ held: the idle connections, when the statistics moved since they were taken (to be
  // closed outside the lock); `idle_statistics_` is then the current epoch.
  std::vector<std::unique_ptr<Database>> CatchUp();
  uint64_t Statistics() const { return statistics_ ? statistics_->load(std::memory_order_acquire) : 0; }

  const std::filesystem::path db_path_;
  const size_t max_idle_;
  const StatisticsEpoch statistics_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Database>> idle_;  // guarded by mu_
  uint64_t idle_statistics_ = 0;                 // guarded by mu_: the epoch `idle_` were taken in
};

}  // namespace teleread
