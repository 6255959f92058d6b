#pragma once
// The audit trail: who received, viewed, downloaded, claimed, signed, delivered or was refused
// what. Entries are only ever appended.
//
// Thread-safety: any thread.
#include <cstdint>
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

class AuditLog {
 public:
  AuditLog(Index& index, Clock clock) : index_(index), clock_(std::move(clock)) {}
  // Durable when it returns.
  Status Append(const AuditEntry& entry);

 private:
  Index& index_;
  Clock clock_;
};

// For the store's own transactions: the entry commits or rolls back with the change it records.
Status AppendAudit(Database& db, int64_t at_ms, const AuditEntry& entry);

}  // namespace teleread
