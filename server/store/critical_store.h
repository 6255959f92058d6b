#pragma once
// Critical results in the index: one row per accepted report with a critical finding, opened in
// the report's own transaction and open until a named person at the member acknowledges it;
// its escalation and its optional webhook notification. Every change is audited in its
// transaction.
//
// Thread-safety: any thread.
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "server/store/index.h"

namespace teleread {

class Database;

struct CriticalResult {
  int64_t id = 0;
  std::string sop_instance_uid;  // the report
  std::string study_instance_uid;
  std::string accession_number;
  std::string member_id;
  std::string signer;
  int64_t opened_ms = 0;
  int64_t acknowledged_ms = 0;
  std::string acknowledged_by;   // the person at the member who took the call
  std::string acknowledged_via;  // the member identity (certificate) that recorded it
  int64_t escalated_ms = 0;
  std::string webhook_state;  // none, pending, delivered, dead
  int64_t webhook_attempts = 0;
  int64_t webhook_next_ms = 0;
  int64_t webhook_delivered_ms = 0;
  std::string webhook_error;
};

struct CriticalQuery {
  std::string member_id;  // empty: every member
  std::string signer;     // empty: any radiologist
  std::string state;      // unacknowledged, acknowledged, or empty for both
  int limit = 200;
};

struct CriticalCounts {
  int64_t unacknowledged = 0;
  int64_t escalated = 0;                 // unacknowledged and past the acknowledgement time
  int64_t oldest_unacknowledged_ms = 0;  // when the oldest open one was opened; 0: none
};

// Inside the report's transaction: opens the critical result of report `sop_instance_uid`
// (idempotent), its webhook pending when `webhook`. The caller calls
// Index::CriticalResultsChanged once the write is committed.
Status OpenCriticalResult(Database& db, const std::string& sop_instance_uid, int64_t study_pk,
                          const std::string& study_instance_uid, const std::string& member_id,
                          const std::string& signer, bool webhook, int64_t now_ms);

class CriticalStore {
 public:
  explicit CriticalStore(Index& index) : index_(index) {}

  Result<std::vector<CriticalResult>> List(const CriticalQuery& query) const;
  // Moved after the commit of each write that opens (ReportDesk, after the report's write) or
  // acknowledges (Acknowledge) a critical result: a list of open results read at version v is
  // current while it is v (Index::critical_version). Escalations and webhook attempts do not
  // move it: they change no reminder. Only the running server's own writes move it: a change
  // made to the index from outside (sqlite3, another process) is seen once a kept list expires
  // (CriticalResults::kKeptMs).
  uint64_t Version() const { return index_.critical_version(); }
  // NotFound when `sop_instance_uid` is no critical result of `member_id` (empty: of any member);
  // Conflict (naming who and when) when it was acknowledged already. Marks the study's task
  // acknowledged for the turnaround clocks.
  Status Acknowledge(const std::string& sop_instance_uid, const std::string& member_id, const std::string& by,
                     const std::string& via, int64_t now_ms);
  // Open results opened at or before `cutoff_ms` that have not been escalated yet: each marked
  // escalated now, audited, and returned.
  Result<std::vector<CriticalResult>> Escalate(int64_t cutoff_ms, int64_t now_ms);
  Result<CriticalCounts> Counts(int64_t escalation_cutoff_ms) const;

  // Pending webhook notifications due at `now_ms`, and when the next one falls due (0: none).
  Result<std::vector<CriticalResult>> DueWebhooks(int64_t now_ms, int limit, int64_t* next_ms) const;
  // Records an attempt: delivered (error empty), retried at `next_ms`, or dead.
  Status WebhookAttempted(int64_t id, const std::string& error, bool dead, int64_t next_ms, int64_t now_ms);

 private:
  Index& index_;
};

}  // namespace teleread
