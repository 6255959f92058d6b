#include "server/reading/report_copy.h"

#include <chrono>
#include <ctime>

#include "common/encapsulated_pdf.h"
#include "server/pdf/report_pdf.h"

namespace teleread {
namespace {

// The study's own modalities: the reports' SR series are not what was examined.
std::string ExaminedModalities(const std::string& modalities) {
  std::string out;
  size_t start = 0;
  while (start <= modalities.size()) {
    size_t end = modalities.find('\\', start);
    if (end == std::string::npos) end = modalities.size();
    const std::string m = modalities.substr(start, end - start);
    if (!m.empty() && m != "SR") out += (out.empty() ? "" : "/") + m;
    start = end + 1;
  }
  return out;
}

std::string NowDateTime() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char out[16];
  std::strftime(out, sizeof out, "%Y%m%d%H%M%S", &tm);
  return out;
}

double MsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

Result<ReportCopy> MakeReportCopy(const ReportCopySource& src, const std::filesystem::path& out) {
  const auto start = std::chrono::steady_clock::now();
  const ReportInfo& r = *src.report;
  const bool amendment = r.predecessor.has_value();
  ReportPdfText text;
  text.centre_name = src.centre_name;
  text.document_title =
      amendment ? "更正报告 Amended Diagnostic Imaging Report" : "影像诊断报告 Diagnostic Imaging Report";
  text.patient_name = r.patient_name;
  text.patient_id = r.patient_id;
  text.patient_sex = r.summary.patient_sex;
  text.patient_birth_date = r.summary.patient_birth_date;
  text.study_date = r.summary.study_date;
  text.modality = ExaminedModalities(src.study_modalities);
  text.study_description = r.summary.study_description;
  text.accession_number = r.accession_number;
  text.findings = r.content.findings;
  text.impression = r.content.impression;
  text.recommendation = r.content.recommendation;
  text.critical = r.content.critical;
  text.signer_name = r.content.radiologist_name;
  text.signer_id = src.signer->common_name;
  text.signed_at = src.signer->signed_at;
  text.certificate_sha256 = src.signer->certificate_sha256;
  text.report_sop_instance_uid = r.sop_instance_uid;
  if (amendment) text.amends_sop_instance_uid = r.predecessor->sop_instance_uid;

  Result<std::string> pdf = TypesetReportPdf(text);
  if (!pdf.ok()) return pdf.status();
  ReportCopy copy;
  copy.typeset_ms = MsSince(start);
  copy.pdf_bytes = pdf->size();
  copy.sop_instance_uid = NewDicomUid();
  EncapsulatedPdfRequest request{src.report_file,
                                 std::move(pdf.value()),
                                 copy.sop_instance_uid,
                                 amendment ? "Diagnostic Imaging Report (amended), PDF copy of the signed SR"
                                           : "Diagnostic Imaging Report, PDF copy of the signed SR",
                                 src.centre_ae_title,
                                 NowDateTime()};
  if (Status s = WriteEncapsulatedPdf(request, out); !s.ok()) return s;
  Result<InstanceSummary> summary = ReadInstanceSummary(out);
  if (!summary.ok()) return Status::IOError("cannot read back the PDF copy: " + summary.status().message());
  copy.summary = std::move(summary.value());
  std::error_code ec;
  copy.file_bytes = std::filesystem::file_size(out, ec);
  copy.total_ms = MsSince(start);
  return copy;
}

}  // namespace teleread
