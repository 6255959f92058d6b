#pragma once
// Signed reports in the index: what the report desk needs to judge a submission, and the one
// write that records an accepted report (its row, the task's new state, the delivery queued, the
// audit entry) inside the transaction that indexes the report's instance.
//
// Thread-safety: any thread.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "server/store/index.h"

namespace teleread {

// The study a report is submitted for, and its reading task as it stands.
struct ReportedStudy {
  int64_t study_pk = 0;
  std::string member_id, patient_id, accession_number;
  std::string modalities;  // of the study's series, e.g. "CT" or "CT\\SR"
  std::string task_state;  // empty: no task yet (still receiving)
  std::string claimed_by;
  int64_t lease_expires_ms = 0;
  int64_t reported_ms = 0;
  std::string expired_claim_by;  // whose claim the expiry sweep ended (at lease_expires_ms)
};

struct NewReport {
  std::string sop_instance_uid;
  std::string study_instance_uid;
  int64_t study_pk = 0;
  std::string member_id;  // whose delivery is queued
  std::string signer;     // radiologist id
  std::string signer_subject;
  std::string signed_at;
  std::string predecessor_sop_instance_uid;  // empty for a first report
  bool critical = false;
  int64_t accepted_ms = 0;
  bool critical_webhook = false;  // the member takes critical results by webhook too
  // The report's PDF copy (empty: none), delivered after the SR. The caller indexes it in the same
  // transaction, after Record's write, exactly when that write inserted the row (`recorded`).
  std::string pdf_sop_instance_uid;
};

// A report as recorded when it was accepted.
struct RecordedReport {
  int64_t accepted_ms = 0;
  std::string pdf_sop_instance_uid;  // empty: none
};

class ReportStore {
 public:
  explicit ReportStore(Index& index) : index_(index) {}

  // NotFound when there is no such study.
  Result<ReportedStudy> Study(const std::string& study_instance_uid) const;
  // The first of `sop_instance_uids` that is no instance of the study; nullopt when all are.
  Result<std::optional<std::string>> FirstOutsideStudy(int64_t study_pk,
                                                       const std::vector<std::string>& sop_instance_uids) const;
  // This report as accepted before; nullopt when it was not.
  Result<std::optional<RecordedReport>> Accepted(const std::string& sop_instance_uid) const;
  // Who signed `sop_instance_uid`, a report of this study; nullopt when it is none.
  Result<std::optional<std::string>> SignerOf(const std::string& sop_instance_uid, int64_t study_pk) const;

  // The write that records `report` with its instance. Idempotent: a report recorded before
  // changes nothing. Fails, after setting `*refused` to the same Conflict, when the predecessor
  // was amended already or the claim changed since it was checked; to the same Unavailable when
  // its audit entry (or its critical result's) cannot be written.
  // `recorded` (when given) is set by each run of the write: true when it inserted the row, false
  // for an identical report accepted before (or by a racing submission). Valid once committed.
  Index::WriteFn Record(NewReport report, Status* refused, bool* recorded = nullptr) const;
  // Once a Record write of a critical report has committed (or failed): the open critical
  // results may have changed (CriticalStore::Version).
  void CriticalRecorded() const { index_.CriticalResultsChanged(); }

 private:
  Index& index_;
};

}  // namespace teleread
