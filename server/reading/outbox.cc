#include "server/reading/outbox.h"

#include <algorithm>
#include <chrono>

#include "common/log.h"
#include "common/restarting.h"

namespace teleread {

DeliveryOutbox::DeliveryOutbox(const Config& config, DeliveryStore& deliveries, const ObjectStore& store,
                               ReportSender& sender, Clock clock)
    : config_(config), deliveries_(deliveries), store_(store), sender_(sender), clock_(std::move(clock)) {}

DeliveryOutbox::~DeliveryOutbox() { Stop(); }

void DeliveryOutbox::Start() {
  thread_ = std::thread([this] { RunRestarting("delivery outbox", [this] { Loop(); }); });
}

void DeliveryOutbox::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void DeliveryOutbox::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

int64_t DeliveryOutbox::Backoff(int64_t attempts) {
  const int64_t base = int64_t{config_.reading.delivery_retry_seconds} * 1000;
  const int64_t cap = int64_t{config_.reading.delivery_retry_max_seconds} * 1000;
  int64_t delay = base;
  for (int64_t i = 1; i < attempts && delay < cap; ++i) delay *= 2;
  delay = std::min(delay, cap);
  // ±20% so that members recovering together are not hit by every queued report at once.
  std::uniform_int_distribution<int64_t> jitter(-delay / 5, delay / 5);
  return std::max<int64_t>(1, delay + jitter(rng_));
}

DeliveryOutbox::Round DeliveryOutbox::RunRound() {
  Round round;
  std::vector<DeliveryRow> due;
  if (Result<std::vector<DeliveryRow>> rows = deliveries_.Due(clock_(), 32, &round.next_ms); rows.ok()) {
    due = std::move(rows.value());
  } else {
    spdlog::error("delivery outbox: cannot read the index: {}", rows.status().message());
  }
  round.due = due.size();
  // A member that failed is tried once per round, so that one hospital being down does not
  // hold up the reports of the others behind its timeouts.
  std::vector<std::string> failed_members;
  unrecorded_ = false;
  for (const DeliveryRow& r : due) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return round;
    }
    if (std::find(failed_members.begin(), failed_members.end(), r.member_id) != failed_members.end()) continue;
    if (!Attempt(r)) failed_members.push_back(r.member_id);
  }
  return round;
}

void DeliveryOutbox::Loop() {
  for (;;) {
    const Round round = RunRound();
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return;
    if (round.due > 0 && !woken_ && !unrecorded_) continue;  // more may be due
    auto wait = std::chrono::milliseconds(1000);
    if (round.next_ms > 0) {
      wait = std::min(wait, std::chrono::milliseconds(std::max<int64_t>(1, round.next_ms - clock_())));
    }
    cv_.wait_for(lock, wait, [this] { return stopping_ || woken_; });
    woken_ = false;
    if (stopping_) return;
  }
}

bool DeliveryOutbox::Attempt(const DeliveryRow& row) {
  std::string error;
  const Member* member = nullptr;
  for (const Member& m : config_.members) {
    if (m.id == row.member_id) member = &m;
  }
  Result<std::optional<DeliveryItem>> item = deliveries_.Item(row.sop_instance_uid);
  bool already_held = false;
  if (!member || !member->delivery) {
    error = "member " + row.member_id + " has no delivery AE configured";
  } else if (!item.ok()) {
    error = "cannot read the index: " + item.status().message();
  } else if (!item.value()) {
    error = "report " + row.sop_instance_uid + " is not in the store";
  } else if (Result<ObjectHandle> object = store_.Open(item.value()->relative_path); !object.ok()) {
    error = "report " + row.sop_instance_uid + " cannot be read: " + object.status().message();
  } else if (object->ranged()) {  // reports are files or index rows (the report desk's), never segments
    error = "report " + row.sop_instance_uid + " is held inside a segment, which report delivery does not read";
  } else {
    const DeliveryItem& i = *item.value();
    // The handle keeps an object held in the index readable until Send returns.
    OutgoingReport report{object->path().string(), i.sop_class_uid,       i.transfer_syntax_uid,
                          row.study_instance_uid,  i.series_instance_uid, row.sop_instance_uid};
    // Durably before the data set is sent (an attempt that never got an association sent
    // nothing): should the process die during the attempt, the row waits until the member has
    // stored what it got or given up on it, and is then asked before a re-send.
    auto begin = [&]() -> Status {
      const int64_t now = clock_();
      const int64_t deadline = now + (int64_t{config_.reading.delivery_timeout_seconds} + 1) * 1000;
      Status s = deliveries_.BeginAttempt(row.id, now, deadline);
      return s.ok() ? s : Status::IOError("cannot record the attempt: " + s.message());
    };
    SendResult sent = sender_.Send(*member->delivery, report, row.last_attempt_ms != 0, begin);
    error = sent.error;
    already_held = sent.already_held;
  }

  const int64_t now = clock_();
  const int64_t attempts = row.attempts + 1;
  const bool dead = !error.empty() && attempts >= config_.reading.delivery_max_attempts;
  const int64_t next = error.empty() || dead ? 0 : now + Backoff(attempts);
  Status s = deliveries_.Record(row, DeliveryOutcome{error.empty() ? "delivered"
                                                     : dead        ? "dead"
                                                                   : "pending",
                                                     attempts, next, error, already_held, now});
  // The log names what went: a report (its SR) or its PDF copy.
  const std::string what = row.report_sop_instance_uid.empty() || row.report_sop_instance_uid == row.sop_instance_uid
                               ? "report " + row.sop_instance_uid
                               : "PDF copy " + row.sop_instance_uid + " of report " + row.report_sop_instance_uid;
  if (!s.ok()) {
    unrecorded_ = true;
    spdlog::error("delivery {}: cannot record the outcome ({}): {}", row.id, error.empty() ? "delivered" : error,
                  s.message());
  } else if (already_held) {
    spdlog::info("{} was already held by {}, which an earlier attempt reached: recorded as delivered, not sent again",
                 what, row.member_id);
  } else if (error.empty()) {
    spdlog::info("{} delivered to {} (attempt {}{})", what, row.member_id, attempts,
                 member && member->delivery && member->delivery->tls ? ", DICOM TLS" : "");
  } else if (dead) {
    spdlog::error("{} to {}: gave up after {} attempts, now dead-lettered: {}", what, row.member_id, attempts, error);
  } else {
    spdlog::warn("{} to {}: attempt {} failed, retrying in {} s: {}", what, row.member_id, attempts,
                 (next - now + 500) / 1000, error);
  }
  return error.empty();
}

Result<std::vector<DeliveryRow>> DeliveryOutbox::List(const std::string& state, const std::string& study_uid,
                                                      int limit) const {
  return deliveries_.List(state, study_uid, limit);
}

Status DeliveryOutbox::Retry(int64_t id, const std::string& actor) {
  Status s = deliveries_.Retry(id, actor, clock_());
  if (s.ok()) Wake();
  return s;
}

Result<DeliveryCounts> DeliveryOutbox::Counts() const { return deliveries_.Counts(); }

}  // namespace teleread
