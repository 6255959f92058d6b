#pragma once
// A query's audit entry written on a thread of its own while the query runs: the entry's group
// commit (an fsync, ~0.2 ms here) was most of a selective C-FIND's time. Nothing is sent before
// the entry is durable (Wait); when it cannot be written the query is refused, as when it was
// written first (fail closed: no patient data leaves unaudited). Only the SQL and the encoding of
// the answer overlap the write.
//
// Thread-safety: Start and Wait from one thread (the association's), one entry at a time.
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "server/store/audit_log.h"

namespace teleread {

class ConcurrentAudit {
 public:
  explicit ConcurrentAudit(AuditLog& log) : log_(log) {}
  ~ConcurrentAudit();  // waits for an entry being written
  ConcurrentAudit(const ConcurrentAudit&) = delete;
  ConcurrentAudit& operator=(const ConcurrentAudit&) = delete;

  // Starts writing `entry`; the previous one must have been waited for.
  void Start(AuditEntry entry);
  // Once the started entry is durable: Ok, or why it was not written.
  Status Wait();

 private:
  void Run();

  AuditLog& log_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<AuditEntry> pending_;  // started, not yet taken by the thread
  std::optional<Status> result_;       // the last entry's outcome, until waited for
  bool busy_ = false;                  // an entry is started and not yet written
  bool stopping_ = false;
  std::thread thread_;  // started by the first Start
};

}  // namespace teleread
