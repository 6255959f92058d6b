#include "server/store/reader_pool.h"

#include "server/store/sqlite.h"

namespace teleread {

void ReturnToPool::operator()(Database* db) const {
  if (pool) {
    pool->Give(db, statistics);
  } else {
    delete db;
  }
}

std::shared_ptr<ReaderPool> ReaderPool::Create(std::filesystem::path db_path, size_t max_idle,
                                               StatisticsEpoch statistics) {
  return std::shared_ptr<ReaderPool>(new ReaderPool(std::move(db_path), max_idle, std::move(statistics)));
}

ReaderPool::ReaderPool(std::filesystem::path db_path, size_t max_idle, StatisticsEpoch statistics)
    : db_path_(std::move(db_path)), max_idle_(max_idle), statistics_(std::move(statistics)) {}

ReaderPool::~ReaderPool() = default;

std::vector<std::unique_ptr<Database>> ReaderPool::CatchUp() {
  // Read under the lock, so that a slower caller never sets an older epoch.
  std::vector<std::unique_ptr<Database>> stale;
  if (const uint64_t statistics = Statistics(); statistics != idle_statistics_) {
    stale.swap(idle_);
    idle_statistics_ = statistics;
  }
  return stale;
}

Result<PooledReader> ReaderPool::Take() {
  uint64_t statistics = 0;
  std::vector<std::unique_ptr<Database>> stale;  // closed outside the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Before the open: a connection opened across a change is at worst closed once too often.
    stale = CatchUp();
    statistics = idle_statistics_;
    if (!idle_.empty()) {
      Database* db = idle_.back().release();
      idle_.pop_back();
      return PooledReader(db, ReturnToPool{shared_from_this(), statistics});
    }
  }
  Result<std::unique_ptr<Database>> db = Database::Open(db_path_, true);
  if (!db.ok()) return db.status();
  return PooledReader(db.value().release(), ReturnToPool{shared_from_this(), statistics});
}

size_t ReaderPool::idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_.size();
}

void ReaderPool::Give(Database* db, uint64_t statistics) {
  std::unique_ptr<Database> owned(db);
  // A statement still stepping (or an open transaction) would pin an old snapshot: the next
  // user would not see later commits, and the WAL could not be checkpointed past it.
  if (!db || !db->Idle()) return;
  std::vector<std::unique_ptr<Database>> stale;  // closed outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  stale = CatchUp();
  if (idle_.size() < max_idle_ && statistics == idle_statistics_) idle_.push_back(std::move(owned));
}

}  // namespace teleread
