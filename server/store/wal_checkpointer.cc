#include "server/store/wal_checkpointer.h"

#include <chrono>
#include <cstdlib>

#include "common/log.h"
#include "server/store/sqlite.h"

namespace teleread {

WalCheckpointer::WalCheckpointer(const std::filesystem::path& db_path, sqlite3* writer, int pages,
                                 std::function<void()> before_each)
    : writer_(writer), pages_(pages), before_each_(std::move(before_each)) {
  Result<std::unique_ptr<Database>> db = Database::Open(db_path, false);
  if (!db.ok()) {  // the commits keep checkpointing, as SQLite does by default
    spdlog::warn("index WAL checkpoints stay on the writer's commits: {}", db.status().message());
    return;
  }
  db_ = std::move(db.value());
  thread_ = std::thread([this] { Loop(); });
  sqlite3_wal_hook(writer_, &WalCheckpointer::Hook, this);
}

WalCheckpointer::~WalCheckpointer() {
  if (!thread_.joinable()) return;
  sqlite3_wal_autocheckpoint(writer_, kPages);  // replaces the hook
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t WalCheckpointer::checkpoints() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

int WalCheckpointer::Hook(void* self, sqlite3*, const char*, int pages) {
  auto& me = *static_cast<WalCheckpointer*>(self);
  if (pages < me.pages_) return SQLITE_OK;
  {
    std::lock_guard<std::mutex> lock(me.mu_);
    me.due_ = true;
  }
  me.cv_.notify_one();
  return SQLITE_OK;
}

void WalCheckpointer::Loop() {
  static const bool trace = std::getenv("TELEREAD_API_TRACE") != nullptr;  // bench-only (request_trace.h)
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || due_; });
    if (stopping_) return;
    due_ = false;
    lock.unlock();
    if (before_each_) before_each_();
    const auto start = std::chrono::steady_clock::now();
    int log = 0, copied = 0;
    const int rc = sqlite3_wal_checkpoint_v2(db_->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
      spdlog::warn("index WAL checkpoint failed: {}", sqlite3_errmsg(db_->handle()));
    } else if (trace) {
      spdlog::warn("index checkpoint us={} wal={} copied={}",
                   std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start)
                       .count(),
                   log, copied);
    }
    lock.lock();
    ++done_;
  }
}

}  // namespace teleread
