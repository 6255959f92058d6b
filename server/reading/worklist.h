#pragma once
// Reading tasks as the radiologists see them: the worklist ordered by priority and due time,
// exclusive claims with a lease, and the audit trail of who saw and did what. The rules (lease
// length, time) live here; the task store makes each change atomic, so of many simultaneous
// claims exactly one wins.
//
// Thread-safety: all methods may be called from any thread.
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/config.h"
#include "common/status.h"
#include "server/store/audit_log.h"
#include "server/store/task_store.h"

namespace teleread {

class Worklist {
 public:
  // `readers` route studies: a radiologist sees and claims only studies of their modalities and
  // members (empty lists: all). Callers that are no reader (admins) see everything.
  Worklist(TaskStore& tasks, AuditLog& audit, int64_t lease_ms, Clock clock, std::vector<Radiologist> readers = {})
      : tasks_(tasks), audit_(audit), lease_ms_(lease_ms), clock_(std::move(clock)), readers_(std::move(readers)) {}

  // The worklist as `caller` may see it (routing added to `filter`).
  Result<std::vector<WorklistRow>> List(WorklistFilter filter, const std::string& caller = "") const;
  // `filter` with the routing that List applies for `caller`: all that the caller changes in the
  // rows List returns (a row shows nothing else per caller).
  WorklistFilter Routed(WorklistFilter filter, const std::string& caller) const;
  // NotFound when the study has no reading task.
  Result<WorklistRow> Task(const std::string& study_instance_uid) const;

  // Conflict (message: who holds it, or "already reported") when another radiologist holds an
  // unexpired claim or the study is reported; NotFound when there is no task; PermissionDenied
  // (with the routing reason) when the study is not among what the radiologist reads.
  Result<WorklistRow> Claim(const std::string& study_instance_uid, const std::string& radiologist);
  // Conflict when the caller holds no live claim, saying why: "your claim expired at ...", "the
  // study is claimed by X", "the study is already reported: ...".
  Result<WorklistRow> Renew(const std::string& study_instance_uid, const std::string& radiologist);
  Status Release(const std::string& study_instance_uid, const std::string& radiologist);
  // Admin `admin`: give the claim to `radiologist` whoever holds it; on a reported study, the
  // right to amend its report.
  Result<WorklistRow> Reassign(const std::string& study_instance_uid, const std::string& radiologist,
                               const std::string& admin);
  // Returns expired claims to the worklist; the number returned.
  Result<int> ExpireLeases();

  Result<TaskCounts> Counts() const;

  // For caching pages: a List result stays what List would return while Version() is unchanged
  // and Now() is before NextTimeChange (task_store.h) of its rows.
  uint64_t Version() const { return tasks_.Version(); }
  // `fn` called after each commit that moves Version, once it moved (Index::OnTasksChange: one
  // listener, Conflict for a second); null: none.
  Status OnChange(std::function<void()> fn) { return tasks_.OnChange(std::move(fn)); }
  int64_t Now() const { return clock_(); }

  // Open tasks that no configured reader may claim.
  Result<std::vector<WorklistRow>> Unroutable() const;
  // Logs (warning, once per study) the unroutable studies not logged before; their number.
  int FlagUnroutable();

  Status Audit(const std::string& actor, const std::string& action, const std::string& study_instance_uid,
               const std::string& detail);

 private:
  TaskStore& tasks_;
  AuditLog& audit_;
  int64_t lease_ms_;
  Clock clock_;
  std::vector<Radiologist> readers_;
  std::mutex flagged_mu_;
  std::set<std::string> flagged_;  // guarded by flagged_mu_
};

// Why `reader` may not read a study from `member_id` with `modalities` (DICOM multi-value,
// backslash-separated); nullopt when they may.
std::optional<std::string> RoutingRefusal(const Radiologist& reader, const std::string& member_id,
                                          const std::string& modalities);

// "your claim expired at 2026-12-04 19:20:05 UTC: claim the study again".
std::string ExpiredClaimMessage(int64_t lease_expires_ms);

}  // namespace teleread
