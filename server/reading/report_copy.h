#pragma once
// The PDF copy of an accepted signed report: typeset (server/pdf), wrapped as an Encapsulated PDF
// instance of the report's series (common/encapsulated_pdf.h) and written to a temporary file for
// the report desk, which stores it with the SR in one transaction. The SR stays the signed,
// authoritative original; the copy says so.
//
// Thread-safety: MakeReportCopy may be called from many threads at once.
#include <cstdint>
#include <filesystem>
#include <string>

#include "common/dicom.h"
#include "common/report.h"
#include "common/signing.h"
#include "common/status.h"

namespace teleread {

struct ReportCopySource {
  std::filesystem::path report_file;  // the accepted SR
  const ReportInfo* report = nullptr;
  const VerifiedSigner* signer = nullptr;
  std::string centre_name;
  std::string centre_ae_title;   // the copy's Source AE Title (who made the file)
  std::string study_modalities;  // the study's, from the index (e.g. "CT" or "CT\SR")
};

struct ReportCopy {
  std::string sop_instance_uid;
  InstanceSummary summary;  // of the written file
  uint64_t pdf_bytes = 0;
  uint64_t file_bytes = 0;
  double typeset_ms = 0;  // Pango/Cairo
  double total_ms = 0;    // typesetting, DICOM encoding and writing
};

// Writes the copy to `out` (a temporary path). InvalidArgument when the report's text cannot be
// typeset (characters without a glyph) or the SR cannot be read; IOError when Cairo or the
// file write fails.
Result<ReportCopy> MakeReportCopy(const ReportCopySource& source, const std::filesystem::path& out);

}  // namespace teleread
