#pragma once
// Reading tasks as the radiologists see them: the worklist ordered by priority and due time,
// exclusive claims with a lease, and the audit trail of who saw and did what. The rules (lease
// length, time) live here; the task store makes each change atomic, so of many simultaneous
// claims exactly one wins.
//
// Thread-safety: all methods may be called from any thread.
#include <cstdint>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "server/store/audit_log.h"
#include "server/store/task_store.h"

namespace teleread {

class Worklist {
 public:
  Worklist(TaskStore& tasks, AuditLog& audit, int64_t lease_ms, Clock clock)
      : tasks_(tasks), audit_(audit), lease_ms_(lease_ms), clock_(std::move(clock)) {}

  Result<std::vector<WorklistRow>> List(const WorklistFilter& filter) const;
  // NotFound when the study has no reading task.
  Result<WorklistRow> Task(const std::string& study_instance_uid) const;

  // Conflict (message: who holds it, or "already reported") when another radiologist holds an
  // unexpired claim or the study is reported; NotFound when there is no task.
  Result<WorklistRow> Claim(const std::string& study_instance_uid, const std::string& radiologist);
  Result<WorklistRow> Renew(const std::string& study_instance_uid, const std::string& radiologist);
  Status Release(const std::string& study_instance_uid, const std::string& radiologist);
  // Admin `admin`: give the claim to `radiologist` whoever holds it; on a reported study, the
  // right to amend its report.
  Result<WorklistRow> Reassign(const std::string& study_instance_uid, const std::string& radiologist,
                               const std::string& admin);
  // Returns expired claims to the worklist; the number returned.
  Result<int> ExpireLeases();

  Result<TaskCounts> Counts() const;

  Status Audit(const std::string& actor, const std::string& action, const std::string& study_instance_uid,
               const std::string& detail);

 private:
  TaskStore& tasks_;
  AuditLog& audit_;
  int64_t lease_ms_;
  Clock clock_;
};

}  // namespace teleread
