#pragma once
// What the reading API reads about studies and reports: detail, instances, archive contents,
// priors and report listings, each within the caller's scope where one applies.
//
// Thread-safety: any thread; each call uses its own read connection (never blocks ingest).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace teleread {

class Index;

struct InstanceEntry {
  std::string sop_instance_uid;
  std::string sop_class_uid;
  std::string instance_number;
  std::string transfer_syntax_uid;
  int64_t size_bytes = 0;
};

struct SeriesEntry {
  std::string series_instance_uid;
  std::string modality;
  std::string series_number;
  std::string description;
  std::string body_part;
  int64_t instance_count = 0;
  std::vector<InstanceEntry> instances;  // by Instance Number, then arrival
};

struct StudyDetail {
  std::string study_instance_uid;
  std::string member_id;
  std::string study_date, study_time, accession_number, description;
  std::string referring_physician, institution;
  std::string patient_name, patient_id, issuer_of_patient_id, patient_birth_date, patient_age, patient_sex;
  std::string modalities;
  std::vector<SeriesEntry> series;  // by Series Number, then arrival
};

struct PriorStudy {
  std::string study_instance_uid;
  std::string member_id;
  std::string study_date, modalities, description;
  int64_t instances = 0;
};

struct ArchiveEntry {
  std::string series_instance_uid;
  std::string sop_instance_uid;
  std::string relative_path;
};

struct ReportQuery {
  std::string study_instance_uid, accession_number, patient_id;  // empty: any
  std::string member_scope;  // a member sees its own studies' reports only; empty: all
};

struct ReportListing {
  std::string sop_instance_uid, study_instance_uid, series_instance_uid, member_id;
  std::string accession_number, patient_id, signer, signed_at;
  int64_t accepted_ms = 0;
  std::string amends, amended_by;  // empty: none
  bool critical = false;
  std::string delivery_state;
  int64_t delivery_attempts = 0, delivered_ms = 0;
  std::string delivery_error;
  int64_t size_bytes = 0;
  std::string pdf_sop_instance_uid;  // its PDF copy; empty: none (a report accepted before copies)
  std::string pdf_delivery_state;
  int64_t pdf_delivered_ms = 0;
};

struct StoredReport {
  std::string relative_path;
  std::string study_instance_uid;
};

class StudyReads {
 public:
  explicit StudyReads(const Index& index) : index_(index) {}

  // NotFound when there is no such study.
  Result<StudyDetail> Study(const std::string& study_instance_uid) const;
  // The stored file of an instance of the study; NotFound when it is none.
  Result<std::string> InstancePath(const std::string& study_instance_uid, const std::string& sop_instance_uid) const;
  // Every instance of the study; empty when there is no such study.
  Result<std::vector<ArchiveEntry>> Archive(const std::string& study_instance_uid) const;
  // Same member and Patient ID, or another member's patient sharing an Other Patient ID (the
  // consortium's national identifier), newest first.
  Result<std::vector<PriorStudy>> Priors(const std::string& study_instance_uid) const;
  Result<std::vector<ReportListing>> Reports(const ReportQuery& query) const;
  // The PDF copy of report `sop_instance_uid` (its Encapsulated PDF instance) and whose it is;
  // NotFound when there is no such report or it has no copy.
  // Scoped like Report: another member's report reads as absent.
  Result<StoredReport> ReportPdf(const std::string& sop_instance_uid, const std::string& member_scope) const;
  // NotFound when there is no such report within `member_scope` (another member's is absent).
  Result<StoredReport> Report(const std::string& sop_instance_uid, const std::string& member_scope) const;

 private:
  Result<StoredReport> ReportObject(const std::string& sop, const std::string& member_scope, const char* column,
                                    const std::string& what) const;
  const Index& index_;
};

}  // namespace teleread
