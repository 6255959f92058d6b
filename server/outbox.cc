#include "server/outbox.h"

#include <algorithm>
#include <chrono>

#include "common/log.h"
#include "server/dicom_tls.h"
#include "server/store_scu.h"

namespace teleread {
namespace {

constexpr char kRowColumns[] =
    "SELECT d.id, d.sop_instance_uid, COALESCE(st.study_instance_uid, ''), d.member_id, d.state, d.attempts, "
    "d.next_attempt_ms, d.created_ms, d.delivered_ms, d.last_error, d.last_attempt_ms FROM deliveries d "
    "LEFT JOIN reports r ON r.sop_instance_uid = d.sop_instance_uid LEFT JOIN studies st ON st.id = r.study_pk ";

DeliveryRow ReadRow(const Statement& q) {
  return DeliveryRow{q.Int(0), q.Text(1), q.Text(2), q.Text(3), q.Text(4),  q.Int(5),
                     q.Int(6), q.Int(7),  q.Int(8),  q.Text(9), q.Int(10)};
}

// A member's status counts as stored for success and the warning statuses (0x0001, 0xBxxx).
bool Stored(uint16_t status) { return status == 0x0000 || status == 0x0001 || (status & 0xF000) == 0xB000; }

}  // namespace

DeliveryOutbox::DeliveryOutbox(const Config& config, Index& index, const ObjectStore& store, Clock clock,
                               const DicomTls* tls)
    : config_(config), index_(index), store_(store), clock_(std::move(clock)), tls_(tls) {}

DeliveryOutbox::~DeliveryOutbox() { Stop(); }

void DeliveryOutbox::Start() { thread_ = std::thread([this] { Loop(); }); }

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

void DeliveryOutbox::Loop() {
  for (;;) {
    std::vector<DeliveryRow> due;
    int64_t next_ms = 0;
    {
      Result<std::unique_ptr<Database>> db = index_.OpenReader();
      if (db.ok()) {
        Statement q(db.value()->handle(), std::string(kRowColumns) +
                                              "WHERE d.state = 'pending' ORDER BY d.next_attempt_ms, d.id LIMIT 32");
        const int64_t now = clock_();
        for (Result<bool> row = q.Step(); row.ok() && row.value(); row = q.Step()) {
          DeliveryRow r = ReadRow(q);
          if (r.next_attempt_ms <= now) {
            due.push_back(std::move(r));
          } else if (next_ms == 0) {
            next_ms = r.next_attempt_ms;
          }
        }
      } else {
        spdlog::error("delivery outbox: cannot read the index: {}", db.status().message());
      }
    }
    // A member that failed is tried once per round, so that one hospital being down does not
    // hold up the reports of the others behind its timeouts.
    std::vector<std::string> failed_members;
    unrecorded_ = false;
    for (const DeliveryRow& r : due) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return;
      }
      if (std::find(failed_members.begin(), failed_members.end(), r.member_id) != failed_members.end()) continue;
      if (!Attempt(r)) failed_members.push_back(r.member_id);
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return;
    if (!due.empty() && !woken_ && !unrecorded_) continue;  // more may be due
    auto wait = std::chrono::milliseconds(1000);
    if (next_ms > 0) wait = std::min(wait, std::chrono::milliseconds(std::max<int64_t>(1, next_ms - clock_())));
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
  std::string file, sop_class, syntax, series_uid;
  {
    Result<std::unique_ptr<Database>> db = index_.OpenReader();
    if (db.ok()) {
      Statement q(db.value()->handle(),
                  "SELECT i.path, i.sop_class_uid, i.transfer_syntax_uid, se.series_instance_uid FROM instances i "
                  "JOIN series se ON se.id = i.series_pk WHERE i.sop_instance_uid = ?1");
      q.Bind(1, row.sop_instance_uid);
      Result<bool> found = q.Step();
      if (found.ok() && found.value()) {
        file = store_.Absolute(q.Text(0)).string();
        sop_class = q.Text(1);
        syntax = q.Text(2);
        series_uid = q.Text(3);
      }
    }
  }
  bool already_held = false;
  if (!member || !member->delivery) {
    error = "member " + row.member_id + " has no delivery AE configured";
  } else if (file.empty()) {
    error = "report " + row.sop_instance_uid + " is not in the store";
  } else {
    StoreScu scu(config_.centre.ae_title, *member->delivery, config_.reading.delivery_timeout_seconds,
                 tls_ ? tls_->ClientLayer(*member->delivery) : nullptr);
    const bool may_hold = row.last_attempt_ms != 0;
    if (Status s = scu.Connect({{sop_class, syntax}}, may_hold); !s.ok()) {
      error = s.message();
    } else if (Status begun = BeginAttempt(row); !begun.ok()) {
      error = "cannot record the attempt: " + begun.message();
    } else {
      if (may_hold) {
        Result<bool> held = scu.Holds(row.study_instance_uid, series_uid, row.sop_instance_uid);
        if (held.ok()) {
          already_held = held.value();
        } else {
          spdlog::info("report {} to {}: an earlier attempt may have reached it, but it cannot say ({}); sending "
                       "again with the same SOP Instance UID",
                       row.sop_instance_uid, row.member_id, held.status().message());
        }
      }
      if (!already_held) {
        StoreResult r = scu.Store(file, sop_class, row.sop_instance_uid, syntax);
        if (!Stored(r.status)) {
          char status[8];
          std::snprintf(status, sizeof status, "%04X", r.status);
          error = r.error.empty() ? std::string("refused with status 0x") + status : r.error;
        }
      }
      scu.Release();
    }
  }

  const int64_t now = clock_();
  const int64_t attempts = row.attempts + 1;
  const bool dead = !error.empty() && attempts >= config_.reading.delivery_max_attempts;
  const int64_t next = error.empty() || dead ? 0 : now + Backoff(attempts);
  Status s = index_.Write([&](Database& db) -> Status {
    Statement u(db.handle(),
                "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_ms = ?4, delivered_ms = ?5, "
                "last_error = ?6 WHERE id = ?1 AND state = 'pending'");
    u.Bind(1, row.id).Bind(2, error.empty() ? "delivered" : dead ? "dead" : "pending").Bind(3, attempts);
    u.Bind(4, next).Bind(5, error.empty() ? now : 0).Bind(6, error);
    if (Status st = u.Run(); !st.ok()) return st;
    if (!error.empty()) return Status::Ok();
    // The "delivered" clock of the study: its first report's arrival at the member.
    Statement t(db.handle(),
                "UPDATE reading_tasks SET delivered_ms = ?2 WHERE delivered_ms = 0 AND study_pk = "
                "(SELECT study_pk FROM reports WHERE sop_instance_uid = ?1)");
    if (Status st = t.Bind(1, row.sop_instance_uid).Bind(2, now).Run(); !st.ok()) return st;
    Statement a(db.handle(), "INSERT INTO audit_log (at_ms, actor, action, study_instance_uid, detail) "
                             "VALUES (?1, 'teleread', 'deliver', ?2, ?3)");
    return a.Bind(1, now)
        .Bind(2, row.study_instance_uid)
        .Bind(3, row.sop_instance_uid + " to " + row.member_id +
                     (already_held ? " (already held after an earlier attempt: C-FIND)" : ""))
        .Run();
  });
  if (!s.ok()) {
    unrecorded_ = true;
    spdlog::error("delivery {}: cannot record the outcome ({}): {}", row.id, error.empty() ? "delivered" : error,
                  s.message());
  } else if (already_held) {
    spdlog::info("report {} was already held by {}, which an earlier attempt reached: recorded as delivered, not "
                 "sent again",
                 row.sop_instance_uid, row.member_id);
  } else if (error.empty()) {
    spdlog::info("report {} delivered to {} (attempt {}{})", row.sop_instance_uid, row.member_id, attempts,
                 member && member->delivery && member->delivery->tls ? ", DICOM TLS" : "");
  } else if (dead) {
    spdlog::error("report {} to {}: gave up after {} attempts, now dead-lettered: {}", row.sop_instance_uid,
                  row.member_id, attempts, error);
  } else {
    spdlog::warn("report {} to {}: attempt {} failed, retrying in {} s: {}", row.sop_instance_uid, row.member_id,
                 attempts, (next - now + 500) / 1000, error);
  }
  return error.empty();
}

Status DeliveryOutbox::BeginAttempt(const DeliveryRow& row) {
  // Durably before the data set is sent (an attempt that never got an association sent
  // nothing): should the process die during the attempt, the row waits until the member has
  // stored what it got or given up on it, and is then asked before a re-send.
  const int64_t now = clock_();
  const int64_t deadline = now + (int64_t{config_.reading.delivery_timeout_seconds} + 1) * 1000;
  return index_.Write([&](Database& db) -> Status {
    Statement u(db.handle(),
                "UPDATE deliveries SET last_attempt_ms = ?2, next_attempt_ms = ?3 WHERE id = ?1 AND state = 'pending'");
    return u.Bind(1, row.id).Bind(2, now).Bind(3, deadline).Run();
  });
}

Result<std::vector<DeliveryRow>> DeliveryOutbox::List(const std::string& state, const std::string& study_uid,
                                                      int limit) const {
  Result<std::unique_ptr<Database>> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(db.value()->handle(), std::string(kRowColumns) +
                                        "WHERE (?1 = '' OR d.state = ?1) AND (?2 = '' OR st.study_instance_uid = ?2) "
                                        "ORDER BY d.id DESC LIMIT ?3");
  q.Bind(1, state).Bind(2, study_uid).Bind(3, int64_t{limit});
  std::vector<DeliveryRow> rows;
  for (;;) {
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    rows.push_back(ReadRow(q));
  }
  return rows;
}

Status DeliveryOutbox::Retry(int64_t id, const std::string& actor) {
  const int64_t now = clock_();
  Status s = index_.Write([&](Database& db) -> Status {
    Statement q(db.handle(), std::string(kRowColumns) + "WHERE d.id = ?1");
    q.Bind(1, id);
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) return Status::NotFound("no delivery " + std::to_string(id));
    const DeliveryRow r = ReadRow(q);
    if (r.state == "delivered") return Status::Conflict("delivery " + std::to_string(id) + " is delivered already");
    Statement u(db.handle(), "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_ms = ?2 WHERE id = ?1");
    if (Status st = u.Bind(1, id).Bind(2, now).Run(); !st.ok()) return st;
    Statement a(db.handle(), "INSERT INTO audit_log (at_ms, actor, action, study_instance_uid, detail) "
                             "VALUES (?1, ?2, 'retry-delivery', ?3, ?4)");
    return a.Bind(1, now).Bind(2, actor).Bind(3, r.study_instance_uid).Bind(4, r.sop_instance_uid).Run();
  });
  if (s.ok()) Wake();
  return s;
}

Result<DeliveryCounts> DeliveryOutbox::Counts() const {
  Result<std::unique_ptr<Database>> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(db.value()->handle(),
              "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'delivered'), 0), "
              "COALESCE(SUM(state = 'dead'), 0), COALESCE(MIN(CASE WHEN state = 'pending' THEN created_ms END), 0) "
              "FROM deliveries");
  Result<bool> row = q.Step();
  if (!row.ok()) return row.status();
  return DeliveryCounts{q.Int(0), q.Int(1), q.Int(2), q.Int(3)};
}

}  // namespace teleread
