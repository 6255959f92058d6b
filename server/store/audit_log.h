#pragma once
// The audit trail: who received, viewed, downloaded, claimed, signed, delivered or was refused
// what. Entries are only ever appended, and each is hash-chained to the one before it: its hash
// is SHA-256 over the previous entry's hash and its own canonical content (id, time, actor,
// action, study, detail), so that an entry changed, removed or inserted later breaks the chain
// from there on. AppendAudit (and AuditLog::Append through it) is the only writer of audit_log.
//
// Thread-safety: any thread; appends run inside index writes, which run one at a time (one writer
// connection), in the order of the index's write queue.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <string>

#include "common/clock.h"
#include "common/status.h"

namespace teleread {

class Database;
class Index;

struct AuditEntry {
  std::string actor;   // a radiologist, admin or member id, a certificate subject, or "teleread"
  std::string action;  // view, download, claim, release, reassign, sign, amend, deliver, refused, ...
  std::string study_instance_uid;
  std::string detail;
};

// An entry as stored, with its place in the chain.
struct StoredAuditEntry {
  int64_t id = 0;
  int64_t at_ms = 0;
  AuditEntry entry;
  std::string prev_hash, hash;  // lowercase hex; both empty for entries older than the chain
};

// The newest entry: what is written to the log as an anchor, to compare with `audit verify`.
struct AuditHead {
  int64_t id = 0;  // 0: no entry yet
  std::string hash;
};

class AuditLog {
 public:
  AuditLog(Index& index, Clock clock) : index_(index), clock_(std::move(clock)) {}
  // Durable when it returns; an error means the entry was not written, and the caller must not
  // go on as if it had been (fail closed).
  Status Append(const AuditEntry& entry);
  // As Append, without waiting: the future is ready once the entry is durable, or with why it
  // was not written. The caller must not act on the entry before then (fail closed).
  std::future<Status> AppendAsync(AuditEntry entry);
  Result<AuditHead> Head();

 private:
  Index& index_;
  Clock clock_;
};

// For the store's own transactions: the entry commits or rolls back with the change it records.
// Its failure, whatever the cause, is Unavailable (the API's 503).
Status AppendAudit(Database& db, int64_t at_ms, const AuditEntry& entry);

// The outcome of walking the whole chain.
struct AuditVerdict {
  int64_t entries = 0;
  int64_t unchained = 0;        // entries written before the chain began (an older server)
  int64_t first_broken_id = 0;  // 0: intact
  std::string problem;          // why the first broken entry is broken
  AuditHead head;
};

// Read-only, on the index at `index_path` (index.sqlite). NotFound without an index.
Result<AuditVerdict> VerifyAuditTrail(const std::filesystem::path& index_path);
// Calls `each` for every entry in order, read-only.
Status ForEachAuditEntry(const std::filesystem::path& index_path,
                         const std::function<void(const StoredAuditEntry&)>& each);

}  // namespace teleread
