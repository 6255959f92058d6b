#include "server/store/task_store.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "server/store/audit_log.h"
#include "server/store/index.h"
#include "server/store/sqlite.h"
#include "server/store/task_sql.h"

namespace teleread {
namespace {

const char* kSelect =
    "SELECT st.study_instance_uid, st.member_id, st.modalities, "
    "(SELECT body_part_examined FROM series b WHERE b.study_pk = st.id AND body_part_examined <> '' LIMIT 1), "
    "st.study_description, st.patient_age, p.sex, st.study_date, st.num_series, st.num_instances, t.priority, "
    "t.state, t.claimed_by, st.first_received_ms, t.complete_ms, t.due_ms, t.claimed_ms, t.lease_expires_ms, "
    "t.reported_ms, t.delivered_ms, t.amended_ms, t.reported_by, p.patient_name, p.patient_id, p.birth_date, "
    "t.expired_claim_by, t.acknowledged_ms FROM reading_tasks t JOIN studies st ON st.id = t.study_pk JOIN patients p "
    "ON p.id = st.patient_pk";

const std::string kTaskOfStudy = std::string(kSelect) + " WHERE st.study_instance_uid = ?1";

// What a claim reads of a study's task besides its row: the routing (member, modalities) before
// the change, and why nothing changed.
const char* kTaskByStudyUid =
    " FROM reading_tasks t JOIN studies st ON st.id = t.study_pk WHERE st.study_instance_uid = ?1";
const std::string kRouteOfTask = std::string("SELECT st.member_id, st.modalities") + kTaskByStudyUid;
const std::string kHolderOfTask = std::string("SELECT t.state, t.claimed_by") + kTaskByStudyUid;

// The open tasks read in worklist order, a page at a time. Named, because SQLite's estimate
// without the LIMIT prefers sorting every open task (~30 ms at 10,000).
const char* kFromOpenInOrder = "FROM reading_tasks t INDEXED BY reading_tasks_open_order JOIN";

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// When the time alone changes how a task reads, from its stored columns: its claim lapses when
// the lease ends; it falls overdue just after its due time. The only place these rules are
// written: ReadRow applies them and keeps the next one still ahead for NextTimeChange.
struct TimeEdges {
  int64_t claim_lapses = kNever;
  int64_t falls_overdue = kNever;
};
TimeEdges EdgesOf(const std::string& stored_state, int64_t lease_expires_ms, int64_t reported_ms, int64_t due_ms) {
  TimeEdges e;
  if (stored_state == "claimed") e.claim_lapses = lease_expires_ms;
  if (reported_ms == 0 && due_ms > 0) e.falls_overdue = due_ms + 1;
  return e;
}

// An expired claim reads as waiting even before the expiry sweep has run.
WorklistRow ReadRow(Statement& q, int64_t now) {
  WorklistRow r;
  r.study_instance_uid = q.Text(0);
  r.member_id = q.Text(1);
  r.modalities = q.Text(2);
  r.body_part = q.Text(3);
  r.study_description = q.Text(4);
  r.patient_age = q.Text(5);
  r.patient_sex = q.Text(6);
  r.study_date = q.Text(7);
  r.num_series = q.Int(8);
  r.num_instances = q.Int(9);
  r.priority = q.Text(10);
  r.state = q.Text(11);
  r.claimed_by = q.Text(12);
  r.received_ms = q.Int(13);
  r.complete_ms = q.Int(14);
  r.due_ms = q.Int(15);
  r.claimed_ms = q.Int(16);
  r.lease_expires_ms = q.Int(17);
  r.reported_ms = q.Int(18);
  r.delivered_ms = q.Int(19);
  r.amended_ms = q.Int(20);
  r.reported_by = q.Text(21);
  r.patient_name = q.Text(22);
  r.patient_id = q.Text(23);
  r.patient_birth_date = q.Text(24);
  if (r.state == "waiting" && r.lease_expires_ms > 0) r.lapsed_claim_by = q.Text(25);
  r.acknowledged_ms = q.Int(26);
  const TimeEdges edges = EdgesOf(r.state, r.lease_expires_ms, r.reported_ms, r.due_ms);
  if (now >= edges.claim_lapses) {
    r.state = r.reported_ms > 0 ? "reported" : "waiting";  // a claim to amend returns to reported
    r.lapsed_claim_by = r.claimed_by;
    r.claimed_by.clear();
  }
  if (r.state == "reported" && r.amended_ms > 0) r.state = "amended";
  r.overdue = now >= edges.falls_overdue;
  for (int64_t edge : {edges.claim_lapses, edges.falls_overdue}) {
    if (edge > now) r.reads_differently_ms = std::min(r.reads_differently_ms, edge);
  }
  return r;
}

// Runs an UPDATE of one task (?1 study UID, ?2 radiologist, ?3 now, ?4 lease; a statement may
// leave some unused) and audits it; `if_unchanged` when no row matched.
Status Change(Index& index, const char* sql, const std::string& uid, const std::string& who, int64_t now,
              int64_t lease_ms, const Status& if_unchanged, const AuditEntry* audit) {
  return index.Write([&](Database& db) -> Status {
    CachedStatement u(db, sql);
    u->Bind(1, uid).Bind(2, who).Bind(3, now).Bind(4, lease_ms);
    if (Status st = u->Run(); !st.ok()) return st;
    if (db.Changes() == 0) return if_unchanged;
    return audit ? AppendAudit(db, now, *audit) : Status::Ok();
  });
}

}  // namespace

int64_t NextTimeChange(const std::vector<WorklistRow>& rows) {
  int64_t next = kNever;
  for (const WorklistRow& r : rows) next = std::min(next, r.reads_differently_ms);
  return next;
}

uint64_t TaskStore::Version() const { return index_.tasks_version(); }

Status TaskStore::OnChange(std::function<void()> fn) { return index_.OnTasksChange(std::move(fn)); }

Result<std::vector<WorklistRow>> TaskStore::List(const WorklistFilter& f, int64_t now) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  std::string sql = std::string(kSelect) + " WHERE 1";
  const bool open_only = f.state.empty() || f.state == "waiting" || f.state == "claimed";
  if (open_only) {
    const char* from = "FROM reading_tasks t JOIN";
    sql.replace(sql.find(from), std::strlen(from), kFromOpenInOrder);
  }
  std::vector<std::string> text;
  auto param = [&](std::string v) {
    text.push_back(std::move(v));
    return "?" + std::to_string(text.size() + 1);  // ?1 is now
  };
  // The state IN term lets the open tasks' ordered index (reading_tasks_open_order) serve the page.
  if (f.state == "waiting") {
    sql += " AND t.state IN ('waiting', 'claimed') AND (t.state = 'waiting' OR t.lease_expires_ms <= ?1)";
  } else if (f.state == "claimed") {
    sql += " AND t.state IN ('waiting', 'claimed') AND t.state = 'claimed' AND t.lease_expires_ms > ?1";
  } else if (f.state == "reported") {
    sql += " AND (t.state = 'reported' OR (t.state = 'claimed' AND t.reported_ms > 0))";
  } else if (f.state == "amended") {
    sql += " AND t.amended_ms > 0";
  } else {
    sql += " AND t.state IN ('waiting', 'claimed')";
  }
  if (!f.member_id.empty()) sql += " AND st.member_id = " + param(f.member_id);
  if (!f.priority.empty()) sql += " AND t.priority = " + param(f.priority);
  if (!f.claimed_by.empty()) sql += " AND t.claimed_by = " + param(f.claimed_by) + " AND t.lease_expires_ms > ?1";
  auto in_list = [&](const std::vector<std::string>& values) {
    std::string list;
    for (const std::string& v : values) list += (list.empty() ? "" : ", ") + param(v);
    return "(" + list + ")";
  };
  if (!f.readable_members.empty()) sql += " AND st.member_id IN " + in_list(f.readable_members);
  if (!f.readable_modalities.empty()) {
    sql += " AND EXISTS (SELECT 1 FROM series r WHERE r.study_pk = st.id AND r.modality IN " +
           in_list(f.readable_modalities) + ")";
  }
  if (!f.modality.empty()) {
    // Modalities are stored upper case (PS3.3 C.7.3.1.1.1); "ct" is what a person types.
    sql += " AND EXISTS (SELECT 1 FROM series m WHERE m.study_pk = st.id AND m.modality = upper(" + param(f.modality) +
           "))";
  }
  sql += " ORDER BY CASE t.priority WHEN 'STAT' THEN 0 WHEN 'HIGH' THEN 1 ELSE 2 END, t.due_ms, t.id";
  // Bound, not written in: one statement per filter set, whatever the page (the plan is named above).
  const int limit_at = static_cast<int>(text.size()) + 2;
  sql += " LIMIT ?" + std::to_string(limit_at) + " OFFSET ?" + std::to_string(limit_at + 1);
  CachedStatement q(*db.value(), sql);
  q->Bind(1, now);
  for (size_t i = 0; i < text.size(); ++i) q->Bind(static_cast<int>(i + 2), text[i]);
  q->Bind(limit_at, int64_t{std::clamp(f.limit, 1, 1000)}).Bind(limit_at + 1, int64_t{std::max(0, f.offset)});
  std::vector<WorklistRow> rows;
  rows.reserve(static_cast<size_t>(std::clamp(f.limit, 1, 1000)));
  for (;;) {
    Result<bool> row = q->Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    rows.push_back(ReadRow(*q, now));
  }
  return rows;
}

Result<WorklistRow> TaskStore::Task(const std::string& uid, int64_t now) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  CachedStatement q(*db.value(), kTaskOfStudy);
  q->Bind(1, uid);
  Result<bool> row = q->Step();
  if (!row.ok()) return row.status();
  if (!row.value()) return Status::NotFound("no reading task for study " + uid);
  return ReadRow(*q, now);
}

Result<WorklistRow> TaskStore::Claim(const std::string& uid, const std::string& who, int64_t now, int64_t lease_ms,
                                     const ClaimCheck& check) {
  std::optional<std::string> refused;
  WorklistRow claimed;
  Status s = index_.Write([&](Database& db) -> Status {
    if (check) {
      // Judged on what this transaction claims, not on a read before it.
      CachedStatement r(db, kRouteOfTask);
      r->Bind(1, uid);
      Result<bool> row = r->Step();
      if (!row.ok()) return row.status();
      if (row.value()) refused = check(r->Text(0), r->Text(1));
      // The refusal commits its audit entry, so the write itself succeeds.
      if (refused) return AppendAudit(db, now, {who, "claim-refused", uid, *refused});
    }
    CachedStatement u(db,
                      "UPDATE reading_tasks SET state = 'claimed', claimed_by = ?2, claimed_ms = CASE WHEN claimed_by "
                      "= ?2 AND state = 'claimed' THEN claimed_ms ELSE ?3 END, lease_expires_ms = ?3 + ?4, "
                      "updated_ms = ?3 WHERE study_pk = (SELECT id FROM studies WHERE study_instance_uid = ?1) AND "
                      "reported_ms = 0 AND (state = 'waiting' OR (state = 'claimed' AND (claimed_by = ?2 OR "
                      "lease_expires_ms <= ?3)))");
    u->Bind(1, uid).Bind(2, who).Bind(3, now).Bind(4, lease_ms);
    if (Status st = u->Run(); !st.ok()) return st;
    if (db.Changes() == 1) {
      // Read here, where the writer's pages are current: a pooled reader would read them all
      // again from the file, every commit having emptied its cache.
      CachedStatement t(db, kTaskOfStudy);
      t->Bind(1, uid);
      Result<bool> row = t->Step();
      if (!row.ok()) return row.status();
      if (!row.value()) return Status::IOError("the claimed task of study " + uid + " cannot be read");
      claimed = ReadRow(*t, now);
      return AppendAudit(db, now, {who, "claim", uid, ""});
    }
    CachedStatement q(db, kHolderOfTask);
    q->Bind(1, uid);
    Result<bool> row = q->Step();
    if (!row.ok()) return row.status();
    if (!row.value()) return Status::NotFound("no reading task for study " + uid);
    if (q->Text(0) == "reported") return Status::Conflict("already reported");
    return Status::Conflict(q->Text(1));
  });
  if (!s.ok()) return s;
  if (refused) return Status::PermissionDenied(*refused);
  return claimed;
}

Status TaskStore::Renew(const std::string& uid, const std::string& who, int64_t now, int64_t lease_ms) {
  return Change(index_,
                "UPDATE reading_tasks SET lease_expires_ms = ?3 + ?4, updated_ms = ?3 WHERE study_pk = (SELECT id "
                "FROM studies WHERE study_instance_uid = ?1) AND state = 'claimed' AND claimed_by = ?2 AND "
                "lease_expires_ms > ?3",
                uid, who, now, lease_ms, Status::Conflict("no live claim of yours on this study"), nullptr);
}

Status TaskStore::Release(const std::string& uid, const std::string& who, int64_t now) {
  const AuditEntry audit{who, "release", uid, ""};
  return Change(index_,
                "UPDATE reading_tasks SET state = 'waiting', claimed_by = '', lease_expires_ms = 0, updated_ms = ?3 "
                "WHERE study_pk = (SELECT id FROM studies WHERE study_instance_uid = ?1) AND state = 'claimed' AND "
                "claimed_by = ?2",
                uid, who, now, 0, Status::Conflict("no claim of yours on this study"), &audit);
}

Status TaskStore::Reassign(const std::string& uid, const std::string& to, const std::string& admin, int64_t now,
                           int64_t lease_ms) {
  const AuditEntry audit{admin, "reassign", uid, to};
  return Change(index_,
                "UPDATE reading_tasks SET state = 'claimed', claimed_by = ?2, claimed_ms = ?3, lease_expires_ms = "
                "?3 + ?4, updated_ms = ?3 WHERE study_pk = (SELECT id FROM studies WHERE study_instance_uid = ?1) "
                "AND state IN ('waiting', 'claimed', 'reported')",
                uid, to, now, lease_ms, Status::NotFound("no open reading task for study " + uid), &audit);
}

Result<int> TaskStore::ExpireLeases(int64_t now) {
  int expired = 0;
  Status s = index_.Write([&](Database& db) -> Status {
    CachedStatement u(db, kExpireLeasesSql);
    if (Status st = u->Bind(1, now).Run(); !st.ok()) return st;
    expired = db.Changes();
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return expired;
}

Result<TaskCounts> TaskStore::Counts(int64_t now) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  TaskCounts c;
  Statement q(db.value()->handle(),
              "SELECT SUM(state = 'waiting' OR (state = 'claimed' AND lease_expires_ms <= ?1)), "
              "SUM(state = 'claimed' AND lease_expires_ms > ?1), SUM(state = 'reported'), "
              "SUM(reported_ms = 0 AND due_ms > 0 AND due_ms < ?1) FROM reading_tasks");
  q.Bind(1, now);
  if (Result<bool> row = q.Step(); !row.ok()) return row.status();
  c.waiting = q.Int(0);
  c.claimed = q.Int(1);
  c.reported = q.Int(2);
  c.overdue = q.Int(3);
  Statement p(db.value()->handle(),
              "SELECT priority, COUNT(*) FROM reading_tasks WHERE reported_ms = 0 GROUP BY priority");
  for (;;) {
    Result<bool> row = p.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    c.open_by_priority.emplace_back(p.Text(0), p.Int(1));
  }
  // Turnaround: when a study was first claimed, reported and delivered, after it was complete.
  Statement t(db.value()->handle(),
              "SELECT claimed_ms - complete_ms, reported_ms - complete_ms, delivered_ms - reported_ms, claimed_ms, "
              "reported_ms, delivered_ms, acknowledged_ms - reported_ms, acknowledged_ms FROM reading_tasks "
              "WHERE claimed_ms > 0 OR reported_ms > 0");
  auto observe = [](Histogram& h, int64_t ms) {
    const double s = static_cast<double>(ms) / 1000.0;
    ++h.count;
    h.sum += s;
    for (size_t i = 0; i < std::size(Histogram::kBounds); ++i) h.buckets[i] += s <= Histogram::kBounds[i];
  };
  for (;;) {
    Result<bool> row = t.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    if (t.Int(3) > 0) observe(c.complete_to_claim, t.Int(0));
    if (t.Int(4) > 0) observe(c.complete_to_report, t.Int(1));
    if (t.Int(5) > 0) observe(c.report_to_delivery, t.Int(2));
    if (t.Int(7) > 0) observe(c.report_to_acknowledged, t.Int(6));
  }
  return c;
}

Result<std::vector<WorklistRow>> TaskStore::OpenOfRoute(int64_t now, const std::string& member_id,
                                                        const std::string& modalities) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(
      db.value()->handle(),
      std::string(kSelect) + " WHERE t.state IN ('waiting', 'claimed') AND st.member_id = ?1 AND st.modalities = ?2");
  q.Bind(1, member_id).Bind(2, modalities);
  std::vector<WorklistRow> rows;
  for (;;) {
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    rows.push_back(ReadRow(q, now));
  }
  return rows;
}

Result<std::vector<std::pair<std::string, std::string>>> TaskStore::OpenRoutes() const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  CachedStatement q(*db.value(),
                    "SELECT DISTINCT st.member_id, st.modalities FROM reading_tasks t JOIN studies st ON st.id = "
                    "t.study_pk WHERE t.state IN ('waiting', 'claimed')");
  std::vector<std::pair<std::string, std::string>> routes;
  for (;;) {
    Result<bool> row = q->Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    routes.emplace_back(q->Text(0), q->Text(1));
  }
  return routes;
}

}  // namespace teleread
