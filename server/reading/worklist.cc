#include "server/reading/worklist.h"

namespace teleread {

Result<std::vector<WorklistRow>> Worklist::List(const WorklistFilter& filter) const {
  return tasks_.List(filter, clock_());
}

Result<WorklistRow> Worklist::Task(const std::string& uid) const { return tasks_.Task(uid, clock_()); }

Result<WorklistRow> Worklist::Claim(const std::string& uid, const std::string& who) {
  if (Status s = tasks_.Claim(uid, who, clock_(), lease_ms_); !s.ok()) return s;
  return Task(uid);
}

Result<WorklistRow> Worklist::Renew(const std::string& uid, const std::string& who) {
  if (Status s = tasks_.Renew(uid, who, clock_(), lease_ms_); !s.ok()) return s;
  return Task(uid);
}

Status Worklist::Release(const std::string& uid, const std::string& who) { return tasks_.Release(uid, who, clock_()); }

Result<WorklistRow> Worklist::Reassign(const std::string& uid, const std::string& to, const std::string& admin) {
  if (Status s = tasks_.Reassign(uid, to, admin, clock_(), lease_ms_); !s.ok()) return s;
  return Task(uid);
}

Result<int> Worklist::ExpireLeases() { return tasks_.ExpireLeases(clock_()); }

Result<TaskCounts> Worklist::Counts() const { return tasks_.Counts(clock_()); }

Status Worklist::Audit(const std::string& actor, const std::string& action, const std::string& uid,
                       const std::string& detail) {
  return audit_.Append({actor, action, uid, detail});
}

}  // namespace teleread
