#include "server/store/critical_store.h"

#include <algorithm>

#include "server/store/audit_log.h"
#include "server/store/sqlite.h"

namespace teleread {
namespace {

constexpr char kColumns[] =
    "SELECT c.id, c.sop_instance_uid, st.study_instance_uid, st.accession_number, c.member_id, c.signer, "
    "c.opened_ms, c.acknowledged_ms, c.acknowledged_by, c.acknowledged_via, c.escalated_ms, c.webhook_state, "
    "c.webhook_attempts, c.webhook_next_ms, c.webhook_delivered_ms, c.webhook_error FROM critical_results c "
    "JOIN studies st ON st.id = c.study_pk ";

CriticalResult ReadCritical(const Statement& q) {
  CriticalResult c;
  c.id = q.Int(0);
  c.sop_instance_uid = q.Text(1);
  c.study_instance_uid = q.Text(2);
  c.accession_number = q.Text(3);
  c.member_id = q.Text(4);
  c.signer = q.Text(5);
  c.opened_ms = q.Int(6);
  c.acknowledged_ms = q.Int(7);
  c.acknowledged_by = q.Text(8);
  c.acknowledged_via = q.Text(9);
  c.escalated_ms = q.Int(10);
  c.webhook_state = q.Text(11);
  c.webhook_attempts = q.Int(12);
  c.webhook_next_ms = q.Int(13);
  c.webhook_delivered_ms = q.Int(14);
  c.webhook_error = q.Text(15);
  return c;
}

Result<std::vector<CriticalResult>> Rows(Statement& q) {
  std::vector<CriticalResult> out;
  for (;;) {
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    out.push_back(ReadCritical(q));
  }
  return out;
}

}  // namespace

Status OpenCriticalResult(Database& db, const std::string& sop, int64_t study_pk, const std::string& study_uid,
                          const std::string& member_id, const std::string& signer, bool webhook, int64_t now) {
  Statement ins(db.handle(),
                "INSERT OR IGNORE INTO critical_results (sop_instance_uid, study_pk, member_id, signer, opened_ms, "
                "webhook_state, webhook_next_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5)");
  ins.Bind(1, sop).Bind(2, study_pk).Bind(3, member_id).Bind(4, signer).Bind(5, now);
  ins.Bind(6, webhook ? "pending" : "none");
  if (Status s = ins.Run(); !s.ok()) return s;
  if (db.Changes() == 0) return Status::Ok();
  return AppendAudit(db, now, {signer, "critical-open", study_uid, sop + " for " + member_id});
}

Result<std::vector<CriticalResult>> CriticalStore::List(const CriticalQuery& f) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  std::string sql = std::string(kColumns) + "WHERE (?1 = '' OR c.member_id = ?1) AND (?2 = '' OR c.signer = ?2)";
  if (f.state == "unacknowledged") sql += " AND c.acknowledged_ms = 0";
  if (f.state == "acknowledged") sql += " AND c.acknowledged_ms > 0";
  sql += " ORDER BY c.acknowledged_ms > 0, c.opened_ms DESC LIMIT ?3";
  CachedStatement q(*db.value(), sql);
  q->Bind(1, f.member_id).Bind(2, f.signer).Bind(3, int64_t{std::clamp(f.limit, 1, 1000)});
  return Rows(*q);
}

Status CriticalStore::Acknowledge(const std::string& sop, const std::string& member_id, const std::string& by,
                                  const std::string& via, int64_t now) {
  Status done = index_.Write([&](Database& db) -> Status {
    Statement q(db.handle(), std::string(kColumns) + "WHERE c.sop_instance_uid = ?1 AND (?2 = '' OR c.member_id = ?2)");
    q.Bind(1, sop).Bind(2, member_id);
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) return Status::NotFound("no critical result for report " + sop);
    const CriticalResult c = ReadCritical(q);
    if (c.acknowledged_ms > 0) {
      return Status::Conflict("acknowledged already by " + c.acknowledged_by + " (" + c.acknowledged_via + ")");
    }
    Statement u(db.handle(),
                "UPDATE critical_results SET acknowledged_ms = ?2, acknowledged_by = ?3, acknowledged_via = ?4 "
                "WHERE id = ?1 AND acknowledged_ms = 0");
    if (Status s = u.Bind(1, c.id).Bind(2, now).Bind(3, by).Bind(4, via).Run(); !s.ok()) return s;
    Statement t(db.handle(),
                "UPDATE reading_tasks SET acknowledged_ms = ?2 WHERE acknowledged_ms = 0 AND study_pk = "
                "(SELECT id FROM studies WHERE study_instance_uid = ?1)");
    if (Status s = t.Bind(1, c.study_instance_uid).Bind(2, now).Run(); !s.ok()) return s;
    return AppendAudit(db, now, {via, "critical-acknowledge", c.study_instance_uid, sop + " by " + by});
  });
  // After the commit (moved also on a failure: a kept list is only read again early).
  index_.CriticalResultsChanged();
  return done;
}

Result<std::vector<CriticalResult>> CriticalStore::Escalate(int64_t cutoff, int64_t now) {
  std::vector<CriticalResult> escalated;
  Status s = index_.Write([&](Database& db) -> Status {
    escalated.clear();  // a retried write starts over
    Statement q(db.handle(),
                std::string(kColumns) + "WHERE c.acknowledged_ms = 0 AND c.escalated_ms = 0 AND c.opened_ms <= ?1");
    q.Bind(1, cutoff);
    Result<std::vector<CriticalResult>> rows = Rows(q);
    if (!rows.ok()) return rows.status();
    Statement u(db.handle(), "UPDATE critical_results SET escalated_ms = ?2 WHERE id = ?1");
    for (CriticalResult& c : rows.value()) {
      if (Status st = u.Bind(1, c.id).Bind(2, now).Run(); !st.ok()) return st;
      if (Status st = AppendAudit(db, now,
                                  {"teleread", "critical-escalate", c.study_instance_uid,
                                   c.sop_instance_uid + " unacknowledged by " + c.member_id});
          !st.ok()) {
        return st;
      }
      c.escalated_ms = now;
      escalated.push_back(std::move(c));
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return escalated;
}

Result<CriticalCounts> CriticalStore::Counts(int64_t cutoff) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(db.value()->handle(),
              "SELECT COUNT(*), COALESCE(SUM(opened_ms <= ?1), 0), COALESCE(MIN(opened_ms), 0) FROM critical_results "
              "WHERE acknowledged_ms = 0");
  q.Bind(1, cutoff);
  if (Result<bool> row = q.Step(); !row.ok()) return row.status();
  return CriticalCounts{q.Int(0), q.Int(1), q.Int(2)};
}

Result<std::vector<CriticalResult>> CriticalStore::DueWebhooks(int64_t now, int limit, int64_t* next_ms) const {
  *next_ms = 0;
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(db.value()->handle(),
              std::string(kColumns) + "WHERE c.webhook_state = 'pending' ORDER BY c.webhook_next_ms LIMIT ?1");
  q.Bind(1, int64_t{limit});
  Result<std::vector<CriticalResult>> rows = Rows(q);
  if (!rows.ok()) return rows.status();
  std::vector<CriticalResult> due;
  for (CriticalResult& c : rows.value()) {
    if (c.webhook_next_ms <= now) {
      due.push_back(std::move(c));
    } else if (*next_ms == 0) {
      *next_ms = c.webhook_next_ms;
    }
  }
  return due;
}

Status CriticalStore::WebhookAttempted(int64_t id, const std::string& error, bool dead, int64_t next_ms, int64_t now) {
  return index_.Write([&](Database& db) -> Status {
    Statement u(db.handle(),
                "UPDATE critical_results SET webhook_attempts = webhook_attempts + 1, webhook_error = ?2, "
                "webhook_state = ?3, webhook_next_ms = ?4, webhook_delivered_ms = CASE WHEN ?2 = '' THEN ?5 ELSE 0 "
                "END WHERE id = ?1 AND webhook_state = 'pending'");
    const char* state = error.empty() ? "delivered" : dead ? "dead" : "pending";
    if (Status s = u.Bind(1, id).Bind(2, error).Bind(3, state).Bind(4, next_ms).Bind(5, now).Run(); !s.ok()) return s;
    if (error.empty() || dead) {
      Statement q(db.handle(), std::string(kColumns) + "WHERE c.id = ?1");
      q.Bind(1, id);
      if (Result<bool> row = q.Step(); !row.ok() || !row.value()) return row.ok() ? Status::Ok() : row.status();
      return AppendAudit(db, now,
                         {"teleread", error.empty() ? "critical-webhook" : "critical-webhook-dead", q.Text(2),
                          q.Text(1) + (error.empty() ? "" : ": " + error)});
    }
    return Status::Ok();
  });
}

}  // namespace teleread
