#pragma once
// The delivery outbox's rows: reports on their way to member hospitals, each attempt recorded
// before it sends and its outcome after.
//
// Thread-safety: any thread.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace teleread {

class Index;

struct DeliveryRow {
  int64_t id = 0;
  std::string sop_instance_uid;
  std::string study_instance_uid;
  std::string member_id;
  std::string state;  // pending, delivered, dead
  int64_t attempts = 0;
  int64_t next_attempt_ms = 0;
  int64_t created_ms = 0;
  int64_t delivered_ms = 0;
  std::string last_error;
  int64_t last_attempt_ms = 0;          // when an attempt last began to send; 0: never sent
  std::string report_sop_instance_uid;  // the SR this row sends or whose PDF copy it sends
};

struct DeliveryCounts {
  int64_t pending = 0, delivered = 0, dead = 0;
  int64_t oldest_pending_ms = 0;  // created_ms of the oldest pending row; 0 when none
};

// The stored report a row sends.
struct DeliveryItem {
  std::string relative_path;
  std::string sop_class_uid;
  std::string transfer_syntax_uid;
  std::string series_instance_uid;
};

struct DeliveryOutcome {
  std::string state;  // delivered, pending (to retry), dead
  int64_t attempts = 0;
  int64_t next_attempt_ms = 0;
  std::string error;          // empty when delivered
  bool already_held = false;  // the member held it after an earlier attempt (its C-FIND said so)
  int64_t at_ms = 0;
};

class DeliveryStore {
 public:
  explicit DeliveryStore(Index& index) : index_(index) {}

  // Pending rows due at `now_ms`, in order, at most `limit`; `*next_ms` gets the time of the
  // next one not yet due (0: none). A PDF copy's row is due only once its SR reached that member.
  Result<std::vector<DeliveryRow>> Due(int64_t now_ms, int limit, int64_t* next_ms) const;
  // nullopt when the report is not in the index.
  Result<std::optional<DeliveryItem>> Item(const std::string& sop_instance_uid) const;
  // Durably, before anything is sent: the row is not due again before `deadline_ms`.
  Status BeginAttempt(int64_t id, int64_t now_ms, int64_t deadline_ms);
  // The outcome of an attempt; a delivery also sets the study's delivered clock and is audited.
  Status Record(const DeliveryRow& row, const DeliveryOutcome& outcome);

  // Rows by state ("" for all), newest first; `study_uid` narrows to one study when non-empty.
  Result<std::vector<DeliveryRow>> List(const std::string& state, const std::string& study_uid, int limit) const;
  // A dead (or pending) row is due at once, its attempts counted from zero; audited.
  // NotFound for an unknown id, Conflict when already delivered.
  Status Retry(int64_t id, const std::string& actor, int64_t now_ms);
  Result<DeliveryCounts> Counts() const;

 private:
  Index& index_;
};

}  // namespace teleread
