#include "server/report_desk.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/dicom.h"
#include "common/log.h"
#include "common/report.h"
#include "common/signing.h"

namespace teleread {
namespace {

Status WriteTemp(const std::filesystem::path& path, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "create " + path.string());
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = Status::FromErrno(errno, "write " + path.string());
      ::close(fd);
      return s;
    }
    done += static_cast<size_t>(n);
  }
  return ::close(fd) == 0 ? Status::Ok() : Status::FromErrno(errno, "close " + path.string());
}

struct StudyFacts {
  int64_t study_pk = 0;
  std::string member_id, patient_id, accession_number;
  std::string task_state, claimed_by;
  int64_t lease_expires_ms = 0;
  int64_t reported_ms = 0;
};

Result<StudyFacts> LoadStudy(Database& db, const std::string& uid) {
  Statement q(db.handle(),
              "SELECT st.id, st.member_id, p.patient_id, st.accession_number, COALESCE(t.state, ''), "
              "COALESCE(t.claimed_by, ''), COALESCE(t.lease_expires_ms, 0), COALESCE(t.reported_ms, 0) FROM studies st "
              "JOIN patients p ON p.id = st.patient_pk LEFT JOIN reading_tasks t ON t.study_pk = st.id "
              "WHERE st.study_instance_uid = ?1");
  q.Bind(1, uid);
  Result<bool> row = q.Step();
  if (!row.ok()) return row.status();
  if (!row.value()) return Status::NotFound("no study " + uid);
  return StudyFacts{q.Int(0), q.Text(1), q.Text(2), q.Text(3), q.Text(4), q.Text(5), q.Int(6), q.Int(7)};
}

std::string Describe(const StudyFacts& s) {
  if (s.task_state.empty()) return "the study is still being received and has no reading task yet";
  if (s.task_state == "waiting") return "the study is not claimed: claim it first";
  if (s.task_state == "reported" || s.reported_ms > 0) return "the study is already reported: submit an amendment that names the report";
  return "the study is claimed by " + s.claimed_by;
}

// Whether `caller` may submit this report now: a first report needs the caller's live claim on
// an unreported study; an amendment needs a report of this study, signed by the caller or
// handed to them by an admin (a claim on the reported study).
Status MayReport(Database& db, const StudyFacts& f, const std::string& caller, const std::string& predecessor,
                 int64_t now) {
  if (predecessor.empty()) {
    if (f.task_state == "claimed" && f.claimed_by == caller && f.lease_expires_ms > now && f.reported_ms == 0) {
      return Status::Ok();
    }
    return Status::Conflict(f.task_state == "claimed" && f.claimed_by == caller && f.reported_ms == 0
                                ? "your claim has expired: claim the study again"
                                : Describe(f));
  }
  Statement q(db.handle(), "SELECT signer FROM reports WHERE sop_instance_uid = ?1 AND study_pk = ?2");
  q.Bind(1, predecessor).Bind(2, f.study_pk);
  Result<bool> row = q.Step();
  if (!row.ok()) return row.status();
  if (!row.value()) return Status::InvalidArgument("the amended report " + predecessor + " is no report of this study");
  const bool assigned = f.task_state == "claimed" && f.claimed_by == caller && f.lease_expires_ms > now;
  if (q.Text(0) == caller || assigned) return Status::Ok();
  return Status::PermissionDenied("only " + q.Text(0) + ", who signed " + predecessor +
                                  ", or a radiologist an admin assigns may amend it");
}

}  // namespace

Result<AcceptedReport> ReportDesk::Accept(const std::string& study_uid, const std::string& dicom,
                                          const std::string& caller) {
  const std::filesystem::path temp = store_.NewTempPath();
  struct TempGuard {
    const std::filesystem::path& path;
    ~TempGuard() { ::unlink(path.c_str()); }
  } guard{temp};
  if (Status s = WriteTemp(temp, dicom); !s.ok()) return s;

  Result<InstanceSummary> summary = ReadInstanceSummary(temp);
  if (!summary.ok()) return Status::InvalidArgument("not a DICOM file: " + summary.status().message());
  Result<ReportInfo> report = ReadReport(temp);
  if (!report.ok()) return Status::InvalidArgument(report.status().message());
  const ReportInfo& r = report.value();
  if (r.completion_flag != "COMPLETE") return Status::InvalidArgument("the report is not COMPLETE");
  if (r.verification_flag != "VERIFIED") return Status::InvalidArgument("the report is not VERIFIED");

  Result<VerifiedSigner> signer = VerifyReportSignature(temp, config_.https.ca, config_.https.crl);
  if (!signer.ok()) return Status::Corruption("signature check failed: " + signer.status().message());
  if (signer->organizational_unit != "radiologist") {
    return Status::PermissionDenied("the report is signed by '" + signer->subject + "', which is no radiologist");
  }
  if (signer->common_name != caller) {
    return Status::PermissionDenied("the report is signed by " + signer->common_name + ", not by you (" + caller + ")");
  }
  const Radiologist* radiologist = nullptr;
  for (const Radiologist& rad : config_.radiologists) {
    if (rad.id == caller) radiologist = &rad;
  }
  if (!radiologist) return Status::PermissionDenied(caller + " is not a configured radiologist");
  if (!radiologist->certificate_subject.empty() && radiologist->certificate_subject != signer->subject) {
    return Status::PermissionDenied("the signing certificate '" + signer->subject + "' is not the one configured for " +
                                    caller);
  }
  if (r.study_instance_uid != study_uid) {
    return Status::InvalidArgument("the report is for study " + r.study_instance_uid + ", not " + study_uid);
  }

  Result<std::unique_ptr<Database>> db = index_.OpenReader();
  if (!db.ok()) return db.status();
  Result<StudyFacts> facts = LoadStudy(*db.value(), study_uid);
  if (!facts.ok()) return facts.status();
  const StudyFacts& f = facts.value();
  if (r.patient_id != f.patient_id) {
    return Status::InvalidArgument("the report's Patient ID '" + r.patient_id + "' is not the study's ('" +
                                   f.patient_id + "')");
  }
  if (r.accession_number != f.accession_number) {
    return Status::InvalidArgument("the report's Accession Number '" + r.accession_number + "' is not the study's ('" +
                                   f.accession_number + "')");
  }
  if (r.evidence.empty()) return Status::InvalidArgument("the report lists no evidence (the instances read)");
  for (const InstanceRef& e : r.evidence) {
    Statement q(db.value()->handle(),
                "SELECT 1 FROM instances i JOIN series se ON se.id = i.series_pk WHERE i.sop_instance_uid = ?1 "
                "AND se.study_pk = ?2");
    q.Bind(1, e.sop_instance_uid).Bind(2, f.study_pk);
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) return Status::InvalidArgument("evidence " + e.sop_instance_uid + " is not an instance of the study");
  }

  const int64_t now = clock_();
  const std::string predecessor = r.predecessor ? r.predecessor->sop_instance_uid : "";
  bool resent = false;  // the same report again, e.g. after a lost response: store checks it is identical
  {
    Statement q(db.value()->handle(), "SELECT signer FROM reports WHERE sop_instance_uid = ?1");
    q.Bind(1, r.sop_instance_uid);
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    resent = row.value();
  }
  // A re-sent report is checked by the store below: identical content, or 409.
  if (!resent) {
    if (Status st = MayReport(*db.value(), f, caller, predecessor, now); !st.ok()) return st;
  }

  // Recorded with the instance, in its transaction; a re-sent identical report finds its row
  // and changes nothing.
  Status refused;
  AcceptedReport accepted{r.sop_instance_uid, r.series_instance_uid, study_uid,   caller,
                          signer->signed_at,  predecessor,           r.content.critical, now, resent};
  StoreRequest req;
  req.temp_file = temp;
  req.calling_ae_title = "HTTPS:" + caller;
  req.member_id = f.member_id;
  req.negotiated_sop_class_uid = summary->sop_class_uid;
  req.affected_sop_instance_uid = summary->sop_instance_uid;
  req.also = [&](Database& w) -> Status {
    Statement ins(w.handle(),
                  "INSERT OR IGNORE INTO reports (sop_instance_uid, study_pk, signer, signer_subject, signed_at, "
                  "accepted_ms, predecessor_sop_instance_uid, critical) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    ins.Bind(1, accepted.sop_instance_uid).Bind(2, f.study_pk).Bind(3, caller).Bind(4, signer->subject);
    ins.Bind(5, accepted.signed_at).Bind(6, now).Bind(7, predecessor).Bind(8, int64_t{accepted.critical});
    if (Status s = ins.Run(); !s.ok()) return s;
    if (sqlite3_changes(w.handle()) == 0) return Status::Ok();  // accepted before
    if (!predecessor.empty()) {
      Statement amended(w.handle(), "SELECT sop_instance_uid FROM reports WHERE predecessor_sop_instance_uid = ?1 "
                                    "AND sop_instance_uid <> ?2");
      amended.Bind(1, predecessor).Bind(2, accepted.sop_instance_uid);
      Result<bool> row = amended.Step();
      if (!row.ok()) return row.status();
      if (row.value()) {
        return refused = Status::Conflict("report " + predecessor + " was already amended by " + amended.Text(0) +
                                          ": amend the latest report");
      }
    }
    Statement task(w.handle(), predecessor.empty()
                                   ? "UPDATE reading_tasks SET state = 'reported', reported_ms = ?2, reported_by = ?3, "
                                     "updated_ms = ?2, lease_expires_ms = 0, claimed_by = '' WHERE study_pk = ?1 AND state = 'claimed' "
                                     "AND claimed_by = ?3 AND lease_expires_ms > ?2 AND reported_ms = 0"
                                   : "UPDATE reading_tasks SET state = 'reported', amended_ms = ?2, updated_ms = ?2, "
                                     "lease_expires_ms = 0, claimed_by = '' WHERE study_pk = ?1");
    task.Bind(1, f.study_pk).Bind(2, now).Bind(3, caller);
    if (Status s = task.Run(); !s.ok()) return s;
    if (sqlite3_changes(w.handle()) == 0) return refused = Status::Conflict("the claim changed meanwhile: claim again");
    Statement out(w.handle(),
                  "INSERT OR IGNORE INTO deliveries (sop_instance_uid, member_id, state, next_attempt_ms, created_ms) "
                  "VALUES (?1, ?2, 'pending', ?3, ?3)");
    if (Status s = out.Bind(1, accepted.sop_instance_uid).Bind(2, f.member_id).Bind(3, now).Run(); !s.ok()) return s;
    Statement audit(w.handle(), "INSERT INTO audit_log (at_ms, actor, action, study_instance_uid, detail) "
                                "VALUES (?1, ?2, ?3, ?4, ?5)");
    audit.Bind(1, now).Bind(2, caller).Bind(3, predecessor.empty() ? "sign" : "amend").Bind(4, study_uid);
    audit.Bind(5, accepted.sop_instance_uid + (predecessor.empty() ? "" : " amends " + predecessor));
    return audit.Run();
  };
  StoreOutcome outcome = ingest_.Store(req);
  if (!refused.ok()) return refused;
  switch (outcome.status) {
    case dimse::kSuccess:
      break;
    case dimse::kDuplicateSopInstance:
      return Status::Conflict("a different object with SOP Instance UID " + accepted.sop_instance_uid + " is stored");
    case dimse::kOutOfResources:
      return Status::NoSpace("the report could not be stored: " + outcome.error_comment);
    default:
      return Status::InvalidArgument("the report could not be stored: " + outcome.error_comment);
  }
  if (resent) return accepted;
  spdlog::info("report {} for study {} accepted from {}{}", accepted.sop_instance_uid, study_uid, caller,
               predecessor.empty() ? "" : " (amends " + predecessor + ")");
  if (on_accepted_) on_accepted_();
  return accepted;
}

}  // namespace teleread
