#include "server/store/delivery_store.h"

#include "server/store/audit_log.h"
#include "server/store/index.h"
#include "server/store/sqlite.h"

namespace teleread {
namespace {

constexpr char kRowColumns[] =
    "SELECT d.id, d.sop_instance_uid, COALESCE(st.study_instance_uid, ''), d.member_id, d.state, d.attempts, "
    "d.next_attempt_ms, d.created_ms, d.delivered_ms, d.last_error, d.last_attempt_ms, d.report_sop_instance_uid "
    "FROM deliveries d "
    "LEFT JOIN reports r ON r.sop_instance_uid = d.report_sop_instance_uid LEFT JOIN studies st ON st.id = r.study_pk ";

DeliveryRow ReadDelivery(const Statement& q) {
  return DeliveryRow{q.Int(0), q.Text(1), q.Text(2), q.Text(3), q.Text(4), q.Int(5),
                     q.Int(6), q.Int(7),  q.Int(8),  q.Text(9), q.Int(10), q.Text(11)};
}

}  // namespace

Result<std::vector<DeliveryRow>> DeliveryStore::Due(int64_t now, int limit, int64_t* next_ms) const {
  *next_ms = 0;
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(
      db.value()->handle(),
      std::string(kRowColumns) +
          "WHERE d.state = 'pending' AND (d.sop_instance_uid = d.report_sop_instance_uid OR EXISTS (SELECT 1 "
          "FROM deliveries s WHERE s.sop_instance_uid = d.report_sop_instance_uid AND s.member_id = d.member_id "
          "AND s.state = 'delivered')) ORDER BY d.next_attempt_ms > ?2, CASE WHEN d.next_attempt_ms <= ?2 "
          "THEN -COALESCE(r.critical, 0) ELSE 0 END, d.next_attempt_ms, d.id LIMIT ?1");
  // Of the due ones, critical results go first; a PDF copy waits until its SR is delivered, so
  // the member never holds a copy without the signed original, whatever failed in between.
  q.Bind(1, int64_t{limit}).Bind(2, now);
  std::vector<DeliveryRow> due;
  for (;;) {
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    DeliveryRow r = ReadDelivery(q);
    if (r.next_attempt_ms <= now) {
      due.push_back(std::move(r));
    } else if (*next_ms == 0) {
      *next_ms = r.next_attempt_ms;
    }
  }
  return due;
}

Result<std::optional<DeliveryItem>> DeliveryStore::Item(const std::string& sop) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(db.value()->handle(),
              "SELECT i.path, i.sop_class_uid, i.transfer_syntax_uid, se.series_instance_uid FROM instances i "
              "JOIN series se ON se.id = i.series_pk WHERE i.sop_instance_uid = ?1");
  q.Bind(1, sop);
  Result<bool> found = q.Step();
  if (!found.ok()) return found.status();
  if (!found.value()) return std::optional<DeliveryItem>();
  return std::optional<DeliveryItem>(DeliveryItem{q.Text(0), q.Text(1), q.Text(2), q.Text(3)});
}

Status DeliveryStore::BeginAttempt(int64_t id, int64_t now, int64_t deadline) {
  return index_.Write([&](Database& db) -> Status {
    Statement u(db.handle(),
                "UPDATE deliveries SET last_attempt_ms = ?2, next_attempt_ms = ?3 WHERE id = ?1 AND state = 'pending'");
    return u.Bind(1, id).Bind(2, now).Bind(3, deadline).Run();
  });
}

Status DeliveryStore::Record(const DeliveryRow& row, const DeliveryOutcome& o) {
  return index_.Write([&](Database& db) -> Status {
    Statement u(db.handle(),
                "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_ms = ?4, delivered_ms = ?5, "
                "last_error = ?6 WHERE id = ?1 AND state = 'pending'");
    const bool delivered = o.state == "delivered";
    u.Bind(1, row.id).Bind(2, o.state).Bind(3, o.attempts).Bind(4, o.next_attempt_ms);
    u.Bind(5, delivered ? o.at_ms : 0).Bind(6, o.error);
    if (Status st = u.Run(); !st.ok()) return st;
    if (!delivered) return Status::Ok();
    // The "delivered" clock of the study: its first report's arrival at the member.
    Statement t(db.handle(),
                "UPDATE reading_tasks SET delivered_ms = ?2 WHERE delivered_ms = 0 AND study_pk = "
                "(SELECT study_pk FROM reports WHERE sop_instance_uid = ?1)");
    if (Status st = t.Bind(1, row.sop_instance_uid).Bind(2, o.at_ms).Run(); !st.ok()) return st;
    return AppendAudit(
        db, o.at_ms,
        {"teleread", "deliver", row.study_instance_uid,
         row.sop_instance_uid + " to " + row.member_id +
             (row.report_sop_instance_uid != row.sop_instance_uid ? " (PDF copy of " + row.report_sop_instance_uid + ")"
                                                                  : "") +
             (o.already_held ? " (already held after an earlier attempt: C-FIND)" : "")});
  });
}

Result<std::vector<DeliveryRow>> DeliveryStore::List(const std::string& state, const std::string& study_uid,
                                                     int limit) const {
  Result<PooledReader> db = index_.OpenReader();
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
    rows.push_back(ReadDelivery(q));
  }
  return rows;
}

Status DeliveryStore::Retry(int64_t id, const std::string& actor, int64_t now) {
  return index_.Write([&](Database& db) -> Status {
    Statement q(db.handle(), std::string(kRowColumns) + "WHERE d.id = ?1");
    q.Bind(1, id);
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) return Status::NotFound("no delivery " + std::to_string(id));
    const DeliveryRow r = ReadDelivery(q);
    if (r.state == "delivered") return Status::Conflict("delivery " + std::to_string(id) + " is delivered already");
    Statement u(db.handle(),
                "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_ms = ?2 WHERE id = ?1");
    if (Status st = u.Bind(1, id).Bind(2, now).Run(); !st.ok()) return st;
    return AppendAudit(db, now, {actor, "retry-delivery", r.study_instance_uid, r.sop_instance_uid});
  });
}

Result<DeliveryCounts> DeliveryStore::Counts() const {
  Result<PooledReader> db = index_.OpenReader();
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
