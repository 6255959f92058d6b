#pragma once
// Reading tasks in the index: the worklist query and every state change of a task, each change
// one transaction through the index's single writer, so of many simultaneous claims exactly one
// wins. Times are passed in, so the rules above (leases, expiry) decide them.
//
// Thread-safety: any thread.
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace teleread {

class Index;

struct WorklistFilter {
  std::string modality;  // matches any modality of the study
  std::string member_id;
  std::string priority;    // STAT, HIGH, ROUTINE
  std::string state;       // waiting, claimed, reported (incl. amended) or amended; empty: open ones
  std::string claimed_by;  // "mine" is resolved by the caller to a radiologist id
  // Routing: only studies with a series of one of these modalities, from one of these members
  // (empty: any).
  std::vector<std::string> readable_modalities;
  std::vector<std::string> readable_members;
  int limit = 50;
  int offset = 0;
};

struct WorklistRow {
  std::string study_instance_uid;
  std::string member_id;
  std::string modalities;
  std::string body_part;
  std::string study_description;
  // Identity, for the radiologists and admins who read the worklist (UTF-8, DICOM PN as the
  // member sent it); never logged at info.
  std::string patient_name;
  std::string patient_id;
  std::string patient_birth_date;
  std::string patient_age;
  std::string patient_sex;
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
  int64_t amended_ms = 0;       // the latest accepted amendment
  std::string reported_by;      // who signed the first report
  int64_t acknowledged_ms = 0;  // a critical result's acknowledgement by the member
  // Who held a claim that has expired (at lease_expires_ms) and nobody has claimed since.
  std::string lapsed_claim_by;
  bool overdue = false;
  // The first time (ms) after the read at which this row would read differently with nothing
  // written (its claim lapses, it falls overdue); INT64_MAX when it never will. Set by the read
  // that applies those rules, so that the rules are written once.
  int64_t reads_differently_ms = std::numeric_limits<int64_t>::max();
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
  Histogram complete_to_claim, complete_to_report, report_to_delivery, report_to_acknowledged;
};

// The first time (ms) at which a row listed earlier would read differently with nothing written:
// a claim's lease ends, a task falls overdue (WorklistRow::reads_differently_ms). INT64_MAX when
// none of `rows` will.
int64_t NextTimeChange(const std::vector<WorklistRow>& rows);

class TaskStore {
 public:
  explicit TaskStore(Index& index) : index_(index) {}

  Result<std::vector<WorklistRow>> List(const WorklistFilter& filter, int64_t now_ms) const;
  // NotFound when the study has no reading task.
  Result<WorklistRow> Task(const std::string& study_instance_uid, int64_t now_ms) const;

  // Judges a claim on the study's member and modalities as the claim's transaction reads them:
  // the reason it is refused, or nothing. Runs inside the index write, with other writes waiting:
  // as an Index::WriteFn, it must not write to the index or take a lock a writer's caller holds.
  using ClaimCheck =
      std::function<std::optional<std::string>(const std::string& member_id, const std::string& modalities)>;
  // Each audited in its transaction under `who`. Claim: the task as claimed; Conflict "already
  // reported", or Conflict whose message is the holder; NotFound when there is no task;
  // PermissionDenied with the reason when `check` refuses it (audited as claim-refused, the task
  // unchanged).
  Result<WorklistRow> Claim(const std::string& study_instance_uid, const std::string& who, int64_t now_ms,
                            int64_t lease_ms, const ClaimCheck& check = nullptr);
  // Conflict when `who` holds no live claim.
  Status Renew(const std::string& study_instance_uid, const std::string& who, int64_t now_ms, int64_t lease_ms);
  // Conflict when `who` holds no claim.
  Status Release(const std::string& study_instance_uid, const std::string& who, int64_t now_ms);
  // The claim goes to `to` whoever holds it (on a reported study: the right to amend); audited
  // as `admin`'s reassign. NotFound when there is no open task.
  Status Reassign(const std::string& study_instance_uid, const std::string& to, const std::string& admin,
                  int64_t now_ms, int64_t lease_ms);
  // Returns expired claims to the worklist; how many.
  Result<int> ExpireLeases(int64_t now_ms);
  Result<TaskCounts> Counts(int64_t now_ms) const;
  // The distinct (member id, modalities) of the waiting or claimed tasks: all that routing reads.
  Result<std::vector<std::pair<std::string, std::string>>> OpenRoutes() const;
  // The waiting or claimed tasks from `member_id` whose studies are of exactly `modalities`.
  Result<std::vector<WorklistRow>> OpenOfRoute(int64_t now_ms, const std::string& member_id,
                                               const std::string& modalities) const;
  // Index::tasks_version: a page listed at one version is current while it stays the same.
  uint64_t Version() const;
  // `fn` called after each commit that moves the version (Index::OnTasksChange: one at a time,
  // Conflict for a second); null: none.
  Status OnChange(std::function<void()> fn);

 private:
  Index& index_;
};

}  // namespace teleread
