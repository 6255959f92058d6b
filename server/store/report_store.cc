#include "server/store/report_store.h"

#include "server/store/audit_log.h"
#include "server/store/critical_store.h"
#include "server/store/sqlite.h"

namespace teleread {

Result<ReportedStudy> ReportStore::Study(const std::string& uid) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(db.value()->handle(),
              "SELECT st.id, st.member_id, p.patient_id, st.accession_number, st.modalities, COALESCE(t.state, ''), "
              "COALESCE(t.claimed_by, ''), COALESCE(t.lease_expires_ms, 0), COALESCE(t.reported_ms, 0), "
              "COALESCE(t.expired_claim_by, '') FROM studies st "
              "JOIN patients p ON p.id = st.patient_pk LEFT JOIN reading_tasks t ON t.study_pk = st.id "
              "WHERE st.study_instance_uid = ?1");
  q.Bind(1, uid);
  Result<bool> row = q.Step();
  if (!row.ok()) return row.status();
  if (!row.value()) return Status::NotFound("no study " + uid);
  return ReportedStudy{q.Int(0),  q.Text(1), q.Text(2), q.Text(3), q.Text(4),
                       q.Text(5), q.Text(6), q.Int(7),  q.Int(8),  q.Text(9)};
}

Result<std::optional<std::string>> ReportStore::FirstOutsideStudy(int64_t study_pk,
                                                                  const std::vector<std::string>& sops) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(db.value()->handle(),
              "SELECT 1 FROM instances i JOIN series se ON se.id = i.series_pk WHERE i.sop_instance_uid = ?1 "
              "AND se.study_pk = ?2");
  for (const std::string& sop : sops) {
    q.Bind(1, sop).Bind(2, study_pk);
    Result<bool> row = q.Step();
    q.Reset();
    if (!row.ok()) return row.status();
    if (!row.value()) return std::optional<std::string>(sop);
  }
  return std::optional<std::string>();
}

Result<std::optional<RecordedReport>> ReportStore::Accepted(const std::string& sop) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(db.value()->handle(),
              "SELECT accepted_ms, pdf_sop_instance_uid FROM reports WHERE sop_instance_uid = ?1");
  q.Bind(1, sop);
  Result<bool> row = q.Step();
  if (!row.ok()) return row.status();
  if (!row.value()) return std::optional<RecordedReport>();
  return std::optional<RecordedReport>(RecordedReport{q.Int(0), q.Text(1)});
}

Result<std::optional<std::string>> ReportStore::SignerOf(const std::string& sop, int64_t study_pk) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(db.value()->handle(), "SELECT signer FROM reports WHERE sop_instance_uid = ?1 AND study_pk = ?2");
  q.Bind(1, sop).Bind(2, study_pk);
  Result<bool> row = q.Step();
  if (!row.ok()) return row.status();
  if (!row.value()) return std::optional<std::string>();
  return std::optional<std::string>(q.Text(0));
}

Index::WriteFn ReportStore::Record(NewReport r, Status* refused, bool* recorded) const {
  return [r = std::move(r), refused, recorded](Database& w) -> Status {
    // This write may run twice (inside the instance's write, then on its own for an instance
    // indexed before): each run says for itself whether it inserted the row.
    if (recorded) *recorded = false;
    const std::string& predecessor = r.predecessor_sop_instance_uid;
    const std::string& pdf = r.pdf_sop_instance_uid;
    Statement ins(w.handle(),
                  "INSERT OR IGNORE INTO reports (sop_instance_uid, study_pk, signer, signer_subject, signed_at, "
                  "accepted_ms, predecessor_sop_instance_uid, critical, pdf_sop_instance_uid) "
                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    ins.Bind(1, r.sop_instance_uid).Bind(2, r.study_pk).Bind(3, r.signer).Bind(4, r.signer_subject);
    ins.Bind(5, r.signed_at).Bind(6, r.accepted_ms).Bind(7, predecessor).Bind(8, int64_t{r.critical});
    ins.Bind(9, pdf);
    if (Status s = ins.Run(); !s.ok()) return s;
    if (w.Changes() == 0) return Status::Ok();  // accepted before
    if (recorded) *recorded = true;             // the caller reads it once the write has committed
    if (!predecessor.empty()) {
      Statement amended(w.handle(),
                        "SELECT sop_instance_uid FROM reports WHERE predecessor_sop_instance_uid = ?1 "
                        "AND sop_instance_uid <> ?2");
      amended.Bind(1, predecessor).Bind(2, r.sop_instance_uid);
      Result<bool> row = amended.Step();
      if (!row.ok()) return row.status();
      if (row.value()) {
        return *refused = Status::Conflict("report " + predecessor + " was already amended by " + amended.Text(0) +
                                           ": amend the latest report");
      }
    }
    Statement task(w.handle(),
                   predecessor.empty()
                       ? "UPDATE reading_tasks SET state = 'reported', reported_ms = ?2, reported_by = ?3, "
                         "updated_ms = ?2, lease_expires_ms = 0, claimed_by = '' WHERE study_pk = ?1 AND "
                         "state = 'claimed' AND claimed_by = ?3 AND lease_expires_ms > ?2 AND reported_ms = 0"
                       : "UPDATE reading_tasks SET state = 'reported', amended_ms = ?2, updated_ms = ?2, "
                         "lease_expires_ms = 0, claimed_by = '' WHERE study_pk = ?1");
    task.Bind(1, r.study_pk).Bind(2, r.accepted_ms).Bind(3, r.signer);
    if (Status s = task.Run(); !s.ok()) return s;
    if (w.Changes() == 0) return *refused = Status::Conflict("the claim changed meanwhile: claim again");
    // The SR first, then its PDF copy: the outbox sends in row order within a priority.
    Statement out(w.handle(),
                  "INSERT OR IGNORE INTO deliveries (sop_instance_uid, member_id, state, next_attempt_ms, created_ms, "
                  "report_sop_instance_uid) VALUES (?1, ?2, 'pending', ?3, ?3, ?4)");
    for (const std::string& sop : {r.sop_instance_uid, pdf}) {
      if (sop.empty()) continue;
      out.Bind(1, sop).Bind(2, r.member_id).Bind(3, r.accepted_ms).Bind(4, r.sop_instance_uid);
      if (Status s = out.Run(); !s.ok()) return s;
    }
    if (Status s = AppendAudit(w, r.accepted_ms,
                               {r.signer, predecessor.empty() ? "sign" : "amend", r.study_instance_uid,
                                r.sop_instance_uid + (predecessor.empty() ? "" : " amends " + predecessor)});
        !s.ok()) {
      return *refused = s;  // the desk's answer (503), not the ingest's (a storage failure)
    }
    if (!r.critical) return Status::Ok();
    Status opened = OpenCriticalResult(w, r.sop_instance_uid, r.study_pk, r.study_instance_uid, r.member_id, r.signer,
                                       r.critical_webhook, r.accepted_ms);
    if (opened.code() == Status::Code::kUnavailable) *refused = opened;  // its audit entry
    return opened;
  };
}

}  // namespace teleread
