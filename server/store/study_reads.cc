#include "server/store/study_reads.h"

#include "server/store/index.h"
#include "server/store/sqlite.h"

namespace teleread {
namespace {

// Runs `q` to the end, handing each row to `take`.
template <typename Take>
Status EachRow(Statement& q, Take take) {
  for (;;) {
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) return Status::Ok();
    take(q);
  }
}

}  // namespace

Result<StudyDetail> StudyReads::Study(const std::string& uid) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement st(
      db.value()->handle(),
      "SELECT st.id, st.member_id, st.study_date, st.study_time, st.accession_number, st.study_description, "
      "st.referring_physician_name, st.institution_name, st.patient_age, p.sex, p.birth_date, st.modalities, "
      "p.patient_name, p.patient_id, p.issuer_of_patient_id FROM studies st JOIN patients p ON p.id = st.patient_pk "
      "WHERE st.study_instance_uid = ?1");
  st.Bind(1, uid);
  Result<bool> found = st.Step();
  if (!found.ok()) return found.status();
  if (!found.value()) return Status::NotFound("no study " + uid);
  StudyDetail d;
  d.study_instance_uid = uid;
  d.member_id = st.Text(1);
  d.study_date = st.Text(2);
  d.study_time = st.Text(3);
  d.accession_number = st.Text(4);
  d.description = st.Text(5);
  d.referring_physician = st.Text(6);
  d.institution = st.Text(7);
  d.patient_age = st.Text(8);
  d.patient_sex = st.Text(9);
  d.patient_birth_date = st.Text(10);
  d.modalities = st.Text(11);
  d.patient_name = st.Text(12);
  d.patient_id = st.Text(13);
  d.issuer_of_patient_id = st.Text(14);
  Statement se(db.value()->handle(),
               "SELECT id, series_instance_uid, modality, series_number, series_description, body_part_examined, "
               "num_instances FROM series WHERE study_pk = ?1 ORDER BY CAST(series_number AS INTEGER), id");
  Statement in(db.value()->handle(),
               "SELECT sop_instance_uid, sop_class_uid, instance_number, transfer_syntax_uid, size_bytes "
               "FROM instances WHERE series_pk = ?1 ORDER BY CAST(instance_number AS INTEGER), id");
  se.Bind(1, st.Int(0));
  std::vector<int64_t> series_pks;
  Status s = EachRow(se, [&](Statement& q) {
    series_pks.push_back(q.Int(0));
    d.series.push_back(SeriesEntry{q.Text(1), q.Text(2), q.Text(3), q.Text(4), q.Text(5), q.Int(6), {}});
  });
  if (!s.ok()) return s;
  for (size_t i = 0; i < series_pks.size(); ++i) {
    in.Bind(1, series_pks[i]);
    s = EachRow(in, [&](Statement& q) {
      d.series[i].instances.push_back(InstanceEntry{q.Text(0), q.Text(1), q.Text(2), q.Text(3), q.Int(4)});
    });
    in.Reset();
    if (!s.ok()) return s;
  }
  return d;
}

Result<std::string> StudyReads::InstancePath(const std::string& uid, const std::string& sop) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(db.value()->handle(),
              "SELECT i.path FROM instances i JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = "
              "se.study_pk WHERE i.sop_instance_uid = ?1 AND st.study_instance_uid = ?2");
  q.Bind(1, sop).Bind(2, uid);
  Result<bool> row = q.Step();
  if (!row.ok()) return row.status();
  if (!row.value()) return Status::NotFound("instance " + sop + " is not in study " + uid);
  return q.Text(0);
}

Result<std::vector<ArchiveEntry>> StudyReads::Archive(const std::string& uid) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(db.value()->handle(),
              "SELECT se.series_instance_uid, i.sop_instance_uid, i.path FROM instances i JOIN series se ON se.id = "
              "i.series_pk JOIN studies st ON st.id = se.study_pk WHERE st.study_instance_uid = ?1 "
              "ORDER BY se.id, CAST(i.instance_number AS INTEGER), i.id");
  q.Bind(1, uid);
  std::vector<ArchiveEntry> entries;
  Status s = EachRow(q, [&](Statement& r) { entries.push_back(ArchiveEntry{r.Text(0), r.Text(1), r.Text(2)}); });
  if (!s.ok()) return s;
  return entries;
}

Result<std::vector<PriorStudy>> StudyReads::Priors(const std::string& uid) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(db.value()->handle(),
              "WITH me AS (SELECT p.id AS pk, p.member_id, p.patient_id, p.other_patient_ids FROM studies st "
              "JOIN patients p ON p.id = st.patient_pk WHERE st.study_instance_uid = ?1), "
              "same AS (SELECT p.id FROM patients p, me WHERE (p.member_id = me.member_id AND p.patient_id = "
              "me.patient_id) OR (me.other_patient_ids <> '' AND (p.other_patient_ids = me.other_patient_ids OR "
              "instr('\\' || p.other_patient_ids || '\\', '\\' || me.other_patient_ids || '\\') > 0 OR "
              "instr('\\' || me.other_patient_ids || '\\', '\\' || p.other_patient_ids || '\\') > 0) AND "
              "p.other_patient_ids <> '')) "
              "SELECT st.study_instance_uid, st.member_id, st.study_date, st.modalities, st.study_description, "
              "st.num_instances FROM studies st WHERE st.patient_pk IN (SELECT id FROM same) AND "
              "st.study_instance_uid <> ?1 ORDER BY st.study_date DESC");
  q.Bind(1, uid);
  std::vector<PriorStudy> priors;
  Status s = EachRow(q, [&](Statement& r) {
    priors.push_back(PriorStudy{r.Text(0), r.Text(1), r.Text(2), r.Text(3), r.Text(4), r.Int(5)});
  });
  if (!s.ok()) return s;
  return priors;
}

Result<std::vector<ReportListing>> StudyReads::Reports(const ReportQuery& query) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(
      db.value()->handle(),
      "SELECT r.sop_instance_uid, st.study_instance_uid, se.series_instance_uid, st.member_id, "
      "st.accession_number, p.patient_id, r.signer, r.signed_at, r.accepted_ms, r.predecessor_sop_instance_uid, "
      "r.critical, COALESCE((SELECT n.sop_instance_uid FROM reports n WHERE n.predecessor_sop_instance_uid = "
      "r.sop_instance_uid), ''), COALESCE(d.state, ''), COALESCE(d.attempts, 0), COALESCE(d.delivered_ms, 0), "
      "COALESCE(d.last_error, ''), i.size_bytes, r.pdf_sop_instance_uid, COALESCE(pd.state, ''), "
      "COALESCE(pd.delivered_ms, 0) "
      "FROM reports r JOIN studies st ON st.id = r.study_pk JOIN patients p ON p.id = st.patient_pk "
      "JOIN instances i ON i.sop_instance_uid = r.sop_instance_uid JOIN series se ON se.id = i.series_pk "
      "LEFT JOIN deliveries d ON d.sop_instance_uid = r.sop_instance_uid AND d.member_id = st.member_id "
      "LEFT JOIN deliveries pd ON r.pdf_sop_instance_uid <> '' AND pd.sop_instance_uid = r.pdf_sop_instance_uid "
      "AND pd.member_id = st.member_id "
      "WHERE (?1 = '' OR st.study_instance_uid = ?1) AND (?2 = '' OR st.accession_number = ?2) "
      "AND (?3 = '' OR p.patient_id = ?3) AND (?4 = '' OR st.member_id = ?4) ORDER BY r.accepted_ms, r.id");
  q.Bind(1, query.study_instance_uid).Bind(2, query.accession_number).Bind(3, query.patient_id);
  q.Bind(4, query.member_scope);
  std::vector<ReportListing> items;
  Status s = EachRow(q, [&](Statement& r) {
    ReportListing l;
    l.sop_instance_uid = r.Text(0);
    l.study_instance_uid = r.Text(1);
    l.series_instance_uid = r.Text(2);
    l.member_id = r.Text(3);
    l.accession_number = r.Text(4);
    l.patient_id = r.Text(5);
    l.signer = r.Text(6);
    l.signed_at = r.Text(7);
    l.accepted_ms = r.Int(8);
    l.amends = r.Text(9);
    l.critical = r.Int(10) != 0;
    l.amended_by = r.Text(11);
    l.delivery_state = r.Text(12);
    l.delivery_attempts = r.Int(13);
    l.delivered_ms = r.Int(14);
    l.delivery_error = r.Text(15);
    l.size_bytes = r.Int(16);
    l.pdf_sop_instance_uid = r.Text(17);
    l.pdf_delivery_state = r.Text(18);
    l.pdf_delivered_ms = r.Int(19);
    items.push_back(std::move(l));
  });
  if (!s.ok()) return s;
  return items;
}

// The stored object a report row names in `column` (the SR itself or its PDF copy), scoped like
// every member read: another member's report reads as absent.
Result<StoredReport> StudyReads::ReportObject(const std::string& sop, const std::string& member_scope,
                                              const char* column, const std::string& what) const {
  Result<PooledReader> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Statement q(db.value()->handle(),
              std::string("SELECT i.path, st.study_instance_uid FROM reports r JOIN studies st ON st.id = r.study_pk "
                          "JOIN instances i ON i.sop_instance_uid = r.") +
                  column + " WHERE r.sop_instance_uid = ?1 AND (?2 = '' OR st.member_id = ?2)");
  q.Bind(1, sop).Bind(2, member_scope);
  Result<bool> row = q.Step();
  if (!row.ok()) return row.status();
  if (!row.value()) return Status::NotFound("no " + what + sop);
  return StoredReport{q.Text(0), q.Text(1)};
}

Result<StoredReport> StudyReads::Report(const std::string& sop, const std::string& member_scope) const {
  return ReportObject(sop, member_scope, "sop_instance_uid", "report ");
}

Result<StoredReport> StudyReads::ReportPdf(const std::string& sop, const std::string& member_scope) const {
  return ReportObject(sop, member_scope, "pdf_sop_instance_uid", "PDF copy of report ");
}

}  // namespace teleread
