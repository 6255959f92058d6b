#pragma once
// The human-readable copy of a signed report: an A4 PDF typeset with Pango over Cairo in the
// WenQuanYi Micro Hei font (Debian's fonts-wqy-microhei), so that Chinese text is shaped and wrapped as
// text, never drawn with hand-written PDF operators. Long reports continue on further pages.
//
// Thread-safety: TypesetReportPdf may be called from many threads at once (each call has its
// own Cairo surface and Pango layout; fontconfig and Pango's font map are thread-safe).
#include <string>

#include "common/status.h"

namespace teleread {

// Everything the copy shows, as UTF-8 text; dates as DICOM has them (DA YYYYMMDD, DT).
struct ReportPdfText {
  std::string centre_name;
  std::string document_title;
  std::string patient_name;  // DICOM PN: "王^丽", "Wang^Li=王^丽"
  std::string patient_id;
  std::string patient_sex;         // M, F, O or empty
  std::string patient_birth_date;  // DA
  std::string study_date;          // DA
  std::string modality;            // the study's, e.g. "CT" or "CT\PT"
  std::string study_description;
  std::string accession_number;
  std::string findings;
  std::string impression;
  std::string recommendation;  // optional
  bool critical = false;
  std::string signer_name;         // DICOM PN
  std::string signer_id;           // the centre's radiologist id
  std::string signed_at;           // DT of the digital signature
  std::string certificate_sha256;  // "AB:CD:..." of the signing certificate
  std::string report_sop_instance_uid;
  std::string amends_sop_instance_uid;  // empty for a first report
};

// The font every copy is set in.
inline constexpr char kReportFontFamily[] = "WenQuanYi Micro Hei";

// The PDF file's bytes; IOError when Cairo fails. A character no installed font has is drawn as
// a box and the copy ends with a red line saying how many (the signed SR is never refused for it).
Result<std::string> TypesetReportPdf(const ReportPdfText& text);

// Whether fontconfig resolves kReportFontFamily to that family itself (and not to a fallback):
// checked at start-up so that a missing fonts-wqy-microhei is said then, not at the first report.
Status CheckReportFont();

}  // namespace teleread
