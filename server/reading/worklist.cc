#include "server/reading/worklist.h"

#include <ctime>
#include <iterator>
#include <sstream>
#include <utility>

#include "common/log.h"

namespace teleread {
namespace {

std::vector<std::string> SplitModalities(const std::string& modalities) {
  std::vector<std::string> out;
  std::istringstream in(modalities);
  std::string m;
  while (std::getline(in, m, '\\')) {
    if (!m.empty()) out.push_back(m);
  }
  return out;
}

std::string Joined(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

std::optional<std::string> RoutingRefusal(const Radiologist& reader, const std::string& member_id,
                                          const std::string& modalities) {
  if (!reader.members.empty()) {
    bool ours = false;
    for (const std::string& m : reader.members) ours |= m == member_id;
    if (!ours) return reader.id + " reads studies of " + Joined(reader.members) + ", not of " + member_id;
  }
  if (reader.modalities.empty()) return std::nullopt;
  const std::vector<std::string> study = SplitModalities(modalities);
  for (const std::string& m : study) {
    for (const std::string& own : reader.modalities) {
      if (m == own) return std::nullopt;
    }
  }
  return reader.id + " reads " + Joined(reader.modalities) + "; this study is " +
         (study.empty() ? std::string("of no known modality") : Joined(study));
}

std::string ExpiredClaimMessage(int64_t lease_expires_ms) {
  const std::time_t t = static_cast<std::time_t>(lease_expires_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &tm);
  return std::string("your claim expired at ") + text + " UTC: claim the study again";
}

WorklistFilter Worklist::Routed(WorklistFilter filter, const std::string& caller) const {
  for (const Radiologist& r : readers_) {
    if (r.id != caller || !filter.claimed_by.empty()) continue;  // what an admin assigned stays visible
    filter.readable_modalities = r.modalities;
    filter.readable_members = r.members;
  }
  return filter;
}

Result<std::vector<WorklistRow>> Worklist::List(WorklistFilter filter, const std::string& caller) const {
  return tasks_.List(Routed(std::move(filter), caller), clock_());
}

Result<WorklistRow> Worklist::Task(const std::string& uid) const { return tasks_.Task(uid, clock_()); }

Result<WorklistRow> Worklist::Claim(const std::string& uid, const std::string& who) {
  TaskStore::ClaimCheck routed;
  for (const Radiologist& r : readers_) {
    if (r.id != who) continue;
    routed = [&r](const std::string& member_id, const std::string& modalities) {
      return RoutingRefusal(r, member_id, modalities);
    };
  }
  return tasks_.Claim(uid, who, clock_(), lease_ms_, routed);
}

Result<WorklistRow> Worklist::Renew(const std::string& uid, const std::string& who) {
  if (Status s = tasks_.Renew(uid, who, clock_(), lease_ms_); !s.ok()) {
    Result<WorklistRow> task = Task(uid);
    if (s.code() != Status::Code::kConflict || !task.ok()) return s;
    if (task->lapsed_claim_by == who) return Status::Conflict(ExpiredClaimMessage(task->lease_expires_ms));
    if (task->state == "claimed") return Status::Conflict("the study is claimed by " + task->claimed_by);
    if (task->reported_ms > 0) {
      return Status::Conflict("the study is already reported: submit an amendment that names the report");
    }
    return s;
  }
  return Task(uid);
}

Status Worklist::Release(const std::string& uid, const std::string& who) { return tasks_.Release(uid, who, clock_()); }

Result<WorklistRow> Worklist::Reassign(const std::string& uid, const std::string& to, const std::string& admin) {
  if (Status s = tasks_.Reassign(uid, to, admin, clock_(), lease_ms_); !s.ok()) return s;
  return Task(uid);
}

Result<int> Worklist::ExpireLeases() { return tasks_.ExpireLeases(clock_()); }

Result<TaskCounts> Worklist::Counts() const { return tasks_.Counts(clock_()); }

Result<std::vector<WorklistRow>> Worklist::Unroutable() const {
  if (readers_.empty()) return std::vector<WorklistRow>();  // no routing configured
  // Routing reads a task's member and modalities alone: each pair among the open tasks is judged
  // once, and only the tasks of a pair nobody reads are read. (Every open task read and judged
  // took ~60 ms of a core at 10,000 tasks, every 2 s.)
  Result<std::vector<std::pair<std::string, std::string>>> routes = tasks_.OpenRoutes();
  if (!routes.ok()) return routes.status();
  std::vector<WorklistRow> out;
  for (const auto& [member, modalities] : routes.value()) {
    bool readable = false;
    for (const Radiologist& r : readers_) readable = readable || !RoutingRefusal(r, member, modalities);
    if (readable) continue;
    Result<std::vector<WorklistRow>> rows = tasks_.OpenOfRoute(clock_(), member, modalities);
    if (!rows.ok()) return rows.status();
    std::move(rows->begin(), rows->end(), std::back_inserter(out));
  }
  return out;
}

int Worklist::FlagUnroutable() {
  Result<std::vector<WorklistRow>> rows = Unroutable();
  if (!rows.ok()) return 0;
  std::lock_guard<std::mutex> lock(flagged_mu_);
  for (const WorklistRow& r : rows.value()) {
    if (flagged_.insert(r.study_instance_uid).second) {
      spdlog::warn("study {} from {} ({}) cannot be read: no configured radiologist reads it; an admin may assign it",
                   r.study_instance_uid, r.member_id, r.modalities);
    }
  }
  return static_cast<int>(rows->size());
}

Status Worklist::Audit(const std::string& actor, const std::string& action, const std::string& uid,
                       const std::string& detail) {
  return audit_.Append({actor, action, uid, detail});
}

}  // namespace teleread
