#pragma once
// The diagnostic report as both sides see it, and its DICOM form: a Basic Text SR in a new
// series of the reported study (PS3.3 A.35.1), with the patient and study modules copied from
// the study, every read instance listed as evidence, COMPLETE and VERIFIED by the radiologist,
// and always UTF-8 (ISO_IR 192). Signing is separate (common/signing.h) and must come last.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/dicom.h"
#include "common/status.h"

namespace teleread {

inline constexpr char kBasicTextSrClass[] = "1.2.840.10008.5.1.4.1.1.88.11";
inline constexpr char kEnhancedSrClass[] = "1.2.840.10008.5.1.4.1.1.88.22";

struct InstanceRef {
  std::string series_instance_uid;
  std::string sop_class_uid;
  std::string sop_instance_uid;
};

struct ReportContent {
  std::string findings;
  std::string impression;
  std::string recommendation;    // optional
  bool critical = false;         // a critical finding that was (or must be) communicated at once
  std::string radiologist_id;    // the centre's id, e.g. "wang.li"; the Verifying Observer's code
  std::string radiologist_name;  // DICOM person name, e.g. "Wang^Li" or "王^丽"
  std::string organization;      // the reading centre
};

// What a stored report says; read back from its SR.
struct ReportInfo {
  ReportContent content;
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string series_instance_uid;
  std::string study_instance_uid;
  std::string patient_id;
  std::string patient_name;  // UTF-8
  std::string accession_number;
  std::string completion_flag;             // COMPLETE, PARTIAL
  std::string verification_flag;           // VERIFIED, UNVERIFIED
  std::string content_datetime;            // YYYYMMDDHHMMSS
  std::optional<InstanceRef> predecessor;  // the report this one amends
  std::vector<InstanceRef> evidence;
  InstanceSummary summary;  // of the same parse, as for any received object
};

struct ReportRequest {
  ReportContent content;
  std::filesystem::path study_instance;    // any instance of the study: patient and study modules
  std::vector<InstanceRef> evidence;       // the study's instances that were read
  std::optional<InstanceRef> predecessor;  // for an amendment: the report it revises
};

// Builds the (unsigned) SR and writes it as a DICOM file to `out`.
// InvalidArgument for missing findings/impression/radiologist or an unreadable study instance.
Status WriteReport(const ReportRequest& request, const std::filesystem::path& out);

// Reads a report SR back. InvalidArgument when the file is no Basic/Enhanced Text SR that
// TeleRead can read (wrong SOP class, no findings or impression).
Result<ReportInfo> ReadReport(const std::filesystem::path& file);

}  // namespace teleread
