#pragma once
// Where signed reports come in: every check a signed report must pass before the centre
// stands behind it, then storage as an instance of the study with its PDF copy (an Encapsulated
// PDF instance in the same series), the task marked reported (or amended), the audit entry and
// the deliveries of both to the member queued, all in one transaction.
// The server verifies; it never signs for anyone.
//
// Thread-safety: Accept may be called from many threads.
#include <cstdint>
#include <functional>
#include <string>

#include "common/clock.h"
#include "common/config.h"
#include "common/status.h"
#include "server/reading/ingest.h"
#include "server/store/object_store.h"
#include "server/store/report_store.h"

namespace teleread {

struct AcceptedReport {
  std::string sop_instance_uid;
  std::string series_instance_uid;
  std::string study_instance_uid;
  std::string signer;
  std::string signed_at;
  std::string predecessor_sop_instance_uid;  // empty for a first report
  bool critical = false;
  int64_t accepted_ms = 0;           // when it was first accepted (also for a re-send)
  bool resent = false;               // the identical report had been accepted before; nothing changed
  std::string pdf_sop_instance_uid;  // its PDF copy (server/reading/report_copy.h); empty: none
};

class ReportDesk {
 public:
  ReportDesk(const Config& config, ReportStore& reports, ObjectStore& store, Ingest& ingest, Clock clock,
             std::function<void()> on_accepted)
      : config_(config),
        reports_(reports),
        store_(store),
        ingest_(ingest),
        clock_(std::move(clock)),
        on_accepted_(std::move(on_accepted)) {}

  // `dicom` is a Part-10 file: a signed Basic or Enhanced Text SR of `study_uid`, uploaded by
  // radiologist `caller`. Failures, each with the exact reason and nothing stored:
  //   InvalidArgument   not a report TeleRead can read, or it does not match the study
  //   Corruption        the signature, its coverage or the signer's certificate fails
  //   PermissionDenied  signed by someone else than the caller, or the caller may not report
  //   NotFound          no such study
  //   Conflict          the study is not claimed by the caller, already reported, or the
  //                     report being amended was amended already
  //   NoSpace/IOError   storage (also: free space below [centre] min_free_disk_mb), or the PDF copy
  //                     could not be written
  //   InvalidArgument   also: the report's text cannot be typeset (a character no font has)
  Result<AcceptedReport> Accept(const std::string& study_uid, const std::string& dicom, const std::string& caller);

 private:
  const Config& config_;
  ReportStore& reports_;
  ObjectStore& store_;
  Ingest& ingest_;
  Clock clock_;
  std::function<void()> on_accepted_;
};

}  // namespace teleread
