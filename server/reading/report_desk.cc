#include "server/reading/report_desk.h"

#include <fcntl.h>
#include <unistd.h>

#include <optional>

#include "common/dicom.h"
#include "common/log.h"
#include "common/report.h"
#include "common/signing.h"
#include "server/reading/report_copy.h"
#include "server/reading/worklist.h"

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

std::string Describe(const ReportedStudy& s) {
  if (s.task_state.empty()) return "the study is still being received and has no reading task yet";
  if (s.task_state == "waiting") return "the study is not claimed: claim it first";
  if (s.task_state == "reported" || s.reported_ms > 0) {
    return "the study is already reported: submit an amendment that names the report";
  }
  return "the study is claimed by " + s.claimed_by;
}

// Whether `caller` may submit this report now: a first report needs the caller's live claim on
// an unreported study; an amendment needs a report of this study, signed by the caller or
// handed to them by an admin (a claim on the reported study).
Status MayReport(const ReportStore& reports, const ReportedStudy& f, const std::string& caller,
                 const std::string& predecessor, int64_t now) {
  if (predecessor.empty()) {
    if (f.task_state == "claimed" && f.claimed_by == caller && f.lease_expires_ms > now && f.reported_ms == 0) {
      return Status::Ok();
    }
    const bool lapsed = f.reported_ms == 0 && f.lease_expires_ms > 0 &&
                        ((f.task_state == "claimed" && f.claimed_by == caller) ||
                         (f.task_state == "waiting" && f.expired_claim_by == caller));
    return Status::Conflict(lapsed ? ExpiredClaimMessage(f.lease_expires_ms) : Describe(f));
  }
  Result<std::optional<std::string>> signer = reports.SignerOf(predecessor, f.study_pk);
  if (!signer.ok()) return signer.status();
  if (!signer.value())
    return Status::InvalidArgument("the amended report " + predecessor + " is no report of this study");
  const bool assigned = f.task_state == "claimed" && f.claimed_by == caller && f.lease_expires_ms > now;
  if (*signer.value() == caller || assigned) return Status::Ok();
  return Status::PermissionDenied("only " + *signer.value() + ", who signed " + predecessor +
                                  ", or a radiologist an admin assigns may amend it");
}

bool HasCriticalWebhook(const Config& config, const std::string& member_id) {
  for (const Member& m : config.members) {
    if (m.id == member_id) return !m.critical_webhook.empty();
  }
  return false;
}

Status StatusFor(const StoreOutcome& outcome, const std::string& sop) {
  switch (outcome.code) {
    case IngestCode::kStored:
      return Status::Ok();
    case IngestCode::kDifferentContent:
      return Status::Conflict("a different object with SOP Instance UID " + sop + " is stored");
    case IngestCode::kNoStorage:
      return Status::NoSpace("the report could not be stored: " + outcome.error_comment);
    default:
      return Status::InvalidArgument("the report could not be stored: " + outcome.error_comment);
  }
}

}  // namespace

Result<AcceptedReport> ReportDesk::Accept(const std::string& study_uid, const std::string& dicom,
                                          const std::string& caller) {
  // The floor that refuses C-STOREs holds for reports too, so that a full disk is refused before
  // anything is written rather than half way through a transaction.
  const uint64_t floor = config_.centre.min_free_disk_mb * 1024 * 1024;
  if (Result<uint64_t> free = store_.FreeBytes(); !free.ok() || free.value() < floor) {
    return Status::NoSpace("storage is full: the report cannot be stored");
  }
  const std::filesystem::path temp = store_.NewTempPath();
  TempFileGuard guard(temp);
  if (Status s = WriteTemp(temp, dicom); !s.ok()) return s;

  // The signature check parses the file, then one more parse gives the report and its summary
  // (and, for a refused signature, whether the file was a report at all, which is said first).
  Result<VerifiedSigner> signer = VerifyReportSignature(temp, config_.https.ca, config_.https.crl);
  Result<ReportInfo> report = ReadReport(temp);
  if (!report.ok()) return Status::InvalidArgument(report.status().message());
  const ReportInfo& r = report.value();
  if (r.summary.transfer_syntax_uid.empty()) return Status::InvalidArgument("not a DICOM file: no file meta header");
  if (r.completion_flag != "COMPLETE") return Status::InvalidArgument("the report is not COMPLETE");
  if (r.verification_flag != "VERIFIED") return Status::InvalidArgument("the report is not VERIFIED");
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

  Result<ReportedStudy> facts = reports_.Study(study_uid);
  if (!facts.ok()) return facts.status();
  const ReportedStudy& f = facts.value();
  if (r.patient_id != f.patient_id) {
    return Status::InvalidArgument("the report's Patient ID '" + r.patient_id + "' is not the study's ('" +
                                   f.patient_id + "')");
  }
  if (r.accession_number != f.accession_number) {
    return Status::InvalidArgument("the report's Accession Number '" + r.accession_number + "' is not the study's ('" +
                                   f.accession_number + "')");
  }
  if (r.evidence.empty()) return Status::InvalidArgument("the report lists no evidence (the instances read)");
  std::vector<std::string> evidence;
  for (const InstanceRef& e : r.evidence) evidence.push_back(e.sop_instance_uid);
  Result<std::optional<std::string>> outside = reports_.FirstOutsideStudy(f.study_pk, evidence);
  if (!outside.ok()) return outside.status();
  if (outside.value())
    return Status::InvalidArgument("evidence " + *outside.value() + " is not an instance of the study");

  const int64_t now = clock_();
  const std::string predecessor = r.predecessor ? r.predecessor->sop_instance_uid : "";
  // The same report again, e.g. after a lost response: the store checks it is identical, or 409.
  Result<std::optional<RecordedReport>> resent = reports_.Accepted(r.sop_instance_uid);
  if (!resent.ok()) return resent.status();
  if (!resent.value()) {
    if (Status st = MayReport(reports_, f, caller, predecessor, now); !st.ok()) return st;
  }

  AcceptedReport accepted{r.sop_instance_uid,  r.series_instance_uid,
                          study_uid,           caller,
                          signer->signed_at,   predecessor,
                          r.content.critical,  now,
                          resent->has_value(), ""};
  // Recorded with the instance, in its transaction; a re-sent identical report finds its row
  // and changes nothing.
  Status refused;
  bool recorded = false;
  StoreRequest req;
  req.temp_file = temp;
  req.calling_ae_title = "HTTPS:" + caller;  // the instance row's sender
  req.member_id = f.member_id;
  req.negotiated_sop_class_uid = r.summary.sop_class_uid;
  req.affected_sop_instance_uid = r.summary.sop_instance_uid;
  req.summary = r.summary;
  // The PDF copy for systems that cannot show an SR, indexed in the SR's transaction.
  std::optional<ReportCopy> copy;
  const std::filesystem::path copy_temp = store_.NewTempPath();
  TempFileGuard copy_guard(copy_temp);
  if (!accepted.resent) {
    Result<ReportCopy> made = MakeReportCopy(
        ReportCopySource{temp, &r, &signer.value(), config_.centre.name, config_.centre.ae_title, f.modalities},
        copy_temp);
    if (!made.ok()) {
      spdlog::error("report {}: the PDF copy cannot be made: {}", r.sop_instance_uid, made.status().message());
      const std::string why = "the PDF copy of the report cannot be made: " + made.status().message();
      return made.status().code() == Status::Code::kInvalidArgument ? Status::InvalidArgument(why)
                                                                    : Status::IOError(why);
    }
    copy = std::move(made.value());
    req.companions.push_back(CompanionObject{copy_temp, copy->summary});
  }
  req.also = reports_.Record(NewReport{accepted.sop_instance_uid, study_uid, f.study_pk, f.member_id, caller,
                                       signer->subject, accepted.signed_at, predecessor, accepted.critical, now,
                                       HasCriticalWebhook(config_, f.member_id), copy ? copy->sop_instance_uid : ""},
                             &refused, &recorded);
  // The copy goes with the report row, also when the SR was indexed before (sent by C-STORE, or
  // its row restored): not when the row was there already (a racing identical submission's).
  req.companions_wanted = [&recorded] { return recorded; };
  StoreOutcome outcome = ingest_.Store(req);
  // Committed (or not): the signer's next worklist lists it (CriticalStore::Version).
  if (accepted.critical) reports_.CriticalRecorded();
  if (!refused.ok()) return refused;
  if (Status st = StatusFor(outcome, accepted.sop_instance_uid); !st.ok()) return st;
  // An identical submission that raced this one recorded the report first: this one is its re-send.
  if (!recorded) accepted.resent = true;
  if (accepted.resent) {
    // Answered as the acceptance it repeats: its time and PDF copy, as recorded.
    Result<std::optional<RecordedReport>> row = reports_.Accepted(accepted.sop_instance_uid);
    if (!row.ok()) return row.status();
    if (!row.value()) return Status::IOError("report " + accepted.sop_instance_uid + " is not recorded");
    accepted.accepted_ms = row.value()->accepted_ms;
    accepted.pdf_sop_instance_uid = row.value()->pdf_sop_instance_uid;
    return accepted;
  }
  // Recorded: the copy was indexed in the same committed write.
  accepted.pdf_sop_instance_uid = copy ? copy->sop_instance_uid : "";
  spdlog::info("report {} for study {} accepted from {}{}", accepted.sop_instance_uid, study_uid, caller,
               predecessor.empty() ? "" : " (amends " + predecessor + ")");
  if (copy) {
    spdlog::info("PDF copy {} of report {}: {} bytes of PDF, {} bytes as DICOM, typeset in {:.1f} ms, {:.1f} ms in all",
                 copy->sop_instance_uid, accepted.sop_instance_uid, copy->pdf_bytes, copy->file_bytes, copy->typeset_ms,
                 copy->total_ms);
  }
  if (on_accepted_) on_accepted_();
  return accepted;
}

}  // namespace teleread
