#pragma once
// Synthetic but realistic DICOM objects for the demo, the tests and the benchmarks.
#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"

namespace teleread::samples {

struct SeriesSpec {
  std::string patient_name;  // UTF-8, DICOM PN form ("Zhang^Wei", "张^三")
  std::string patient_id;
  std::string other_patient_ids;
  std::string birth_date = "19700101";
  std::string sex = "O";
  std::string age = "056Y";
  std::string specific_character_set = "ISO_IR 192";  // text is encoded to this
  std::string modality = "CT";
  std::string body_part;
  std::string study_description;
  std::string series_description;
  std::string study_date = "20261120";
  std::string study_time = "083000";
  std::string accession_number;
  std::string institution;
  std::string referring_physician;
  std::string priority;             // Requested Procedure Priority: STAT, HIGH, ROUTINE
  std::string study_instance_uid;   // generated when empty
  std::string series_instance_uid;  // generated when empty
  int series_number = 1;
  int instances = 1;
  int rows = 512;
  int columns = 512;
  std::string transfer_syntax = "1.2.840.10008.1.2.1";  // a native transfer syntax
};

std::string NewUid();

// Writes `spec.instances` Part 10 files into `dir` (created if needed); returns their paths.
Result<std::vector<std::filesystem::path>> WriteSeries(const SeriesSpec& spec, const std::filesystem::path& dir);

// The sample consortium: studies from ZZ_PACS, LS_PACS and YX_PACS under dir/<AE>/. Latin and
// Chinese names in UTF-8 and GB18030, some STAT, one patient known to two members under a
// shared national ID.
Result<std::vector<std::filesystem::path>> WriteConsortium(const std::filesystem::path& dir, int ct_slices);

}  // namespace teleread::samples
