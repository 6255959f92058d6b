#pragma once
// Idle read-only connections kept for the next read. Opening one and reading the schema cost
// more than a selective query itself, and a kept connection keeps its page cache. WAL: a kept
// connection still sees every commit made after it was opened, since each read starts a new
// snapshot; so a connection goes back to the pool only with no statement running on it.
//
// Thread-safety: Take from any thread; each PooledReader is used by one thread at a time.
#include <cstddef>
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
  void operator()(Database* db) const;
};
using PooledReader = std::unique_ptr<Database, ReturnToPool>;

class ReaderPool : public std::enable_shared_from_this<ReaderPool> {
 public:
  // Keeps at most `max_idle` connections open between reads.
  static std::shared_ptr<ReaderPool> Create(std::filesystem::path db_path, size_t max_idle);
  ~ReaderPool();
  // An idle connection, or a new one when none is idle.
  Result<PooledReader> Take();
  size_t idle() const;

 private:
  friend struct ReturnToPool;
  ReaderPool(std::filesystem::path db_path, size_t max_idle);
  void Give(Database* db);  // keeps it if it is idle and there is room, else closes it

  const std::filesystem::path db_path_;
  const size_t max_idle_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Database>> idle_;  // guarded by mu_
};

}  // namespace teleread
