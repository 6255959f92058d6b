#pragma once
// Reading tasks as the radiologists see them: the worklist ordered by priority and due time,
// exclusive claims with a lease, and the audit trail of who saw and did what. Every change goes
// through the index's single writer, so of many simultaneous claims exactly one wins.
//
// Thread-safety: all methods may be called from any thread.
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "server/index.h"

namespace teleread {

struct WorklistFilter {
  std::string modality;   // matches any modality of the study
  std::string member_id;
  std::string priority;   // STAT, HIGH, ROUTINE
  std::string state;      // waiting, claimed, reported (incl. amended) or amended; empty: open ones
  std::string claimed_by; // "mine" is resolved by the caller to a radiologist id
  int limit = 50;
  int offset = 0;
};

struct WorklistRow {
  std::string study_instance_uid;
  std::string member_id;
  std::string modalities;
  std::string body_part;
  std::string study_description;
  std::string patient_age;
  std::string patient_sex;
  // Identity, for the radiologists and admins who read the worklist (UTF-8); never logged at info.
  std::string patient_name;
  std::string patient_id;
  std::string patient_birth_date;
  std::string study_date;
  int64_t num_series = 0;
  int64_t num_instances = 0;
  std::string priority;
  std::string state;  // waiting, claimed, reported, amended
  std::string claimed_by;
  int64_t received_ms = 0;
  int64_t complete_ms = 0;
  int64_t due_ms = 0;
  int64_t claimed_ms = 0;
  int64_t lease_expires_ms = 0;
  int64_t reported_ms = 0;
  int64_t delivered_ms = 0;
  int64_t amended_ms = 0;   // the latest accepted amendment
  std::string reported_by;  // who signed the first report
  bool overdue = false;
};

// A cumulative histogram in seconds, as Prometheus wants it.
struct Histogram {
  static constexpr double kBounds[] = {60, 300, 900, 3600, 4 * 3600, 24 * 3600};
  int64_t buckets[std::size(kBounds)] = {};  // observations <= each bound
  int64_t count = 0;
  double sum = 0;
};

struct TaskCounts {
  int64_t waiting = 0, claimed = 0, reported = 0, overdue = 0;
  std::vector<std::pair<std::string, int64_t>> open_by_priority;
  Histogram complete_to_claim, complete_to_report, report_to_delivery;
};

class Worklist {
 public:
  using Clock = std::function<int64_t()>;
  Worklist(Index& index, int64_t lease_ms, Clock clock) : index_(index), lease_ms_(lease_ms), clock_(std::move(clock)) {}

  Result<std::vector<WorklistRow>> List(const WorklistFilter& filter) const;
  // NotFound when the study has no reading task.
  Result<WorklistRow> Task(const std::string& study_instance_uid) const;

  // Conflict (message: who holds it) when another radiologist holds an unexpired claim or the
  // study is reported; NotFound when there is no task.
  Result<WorklistRow> Claim(const std::string& study_instance_uid, const std::string& radiologist);
  Result<WorklistRow> Renew(const std::string& study_instance_uid, const std::string& radiologist);
  Status Release(const std::string& study_instance_uid, const std::string& radiologist);
  // Admin: give the claim to `radiologist` whoever holds it; on a reported study, the right to
  // amend its report.
  Result<WorklistRow> Reassign(const std::string& study_instance_uid, const std::string& radiologist);
  // Returns expired claims to the worklist; the number returned.
  Result<int> ExpireLeases();

  Result<TaskCounts> Counts() const;

  Status Audit(const std::string& actor, const std::string& action, const std::string& study_instance_uid,
               const std::string& detail);

 private:
  // Runs an UPDATE of one task (?1 study UID, ?2 radiologist, ?3 now, ?4 lease; a statement may
  // leave some unused) and audits it;
  // `if_unchanged` when no row matched.
  Status Change(const char* sql, const std::string& uid, const std::string& who, const Status& if_unchanged,
                const char* audit_action);

  Index& index_;
  int64_t lease_ms_;
  Clock clock_;
};

}  // namespace teleread
