// The PDF copy's typesetting on its own: inputs a signed SR may carry must yield a copy, never a
// crash or a refused report.
#include <catch2/catch.hpp>

#include <string>

#include "server/pdf/report_pdf.h"
#include "tests/support/process.h"
#include "tests/support/skip.h"

namespace teleread::test {
namespace {

ReportPdfText Sample() {
  ReportPdfText t;
  t.centre_name = "涞水县医学影像诊断中心";
  t.document_title = "Diagnostic Imaging Report";
  t.patient_name = "张^三";
  t.patient_id = "ZZ0001";
  t.findings = "右肺上叶见一磨玻璃结节。";
  t.impression = "考虑炎性病变。";
  t.report_sop_instance_uid = "1.2.3";
  return t;
}

std::string TextOf(const std::string& pdf) {
  ScratchDir dir;
  WriteFile(dir.path() / "c.pdf", pdf);
  CommandResult r =
      RunCommand({PDFTOTEXT_BIN, "-enc", "UTF-8", (dir.path() / "c.pdf").string(), (dir.path() / "c.txt").string()});
  REQUIRE(r.exit_code == 0);
  return ReadFile(dir.path() / "c.txt");
}

}  // namespace

TEST_CASE("a PDF copy is made from UIDs of any length and text with control characters", "[pdf]") {
  if (std::string(PDFTOTEXT_BIN).empty()) TELEREAD_SKIP("pdftotext (poppler-utils) is not installed");
  ReportPdfText t = Sample();
  // A footer long enough to wrap once started a page from inside the footer, without end.
  t.report_sop_instance_uid = "1.2." + std::string(120, '7');
  t.findings = "第一段。\f第二段\v含有控制字符。";
  Result<std::string> pdf = TypesetReportPdf(t);
  REQUIRE(pdf.ok());
  CHECK(pdf->rfind("%PDF", 0) == 0);
  const std::string text = TextOf(pdf.value());
  CHECK_THAT(text, Catch::Contains("第二段"));
  CHECK_THAT(text, !Catch::Contains("cannot be shown"));
}

TEST_CASE("a character no font has is shown as a box and the copy says so, the report is not refused", "[pdf]") {
  if (std::string(PDFTOTEXT_BIN).empty()) TELEREAD_SKIP("pdftotext (poppler-utils) is not installed");
  ReportPdfText t = Sample();
  t.findings = "结节 \xF4\x8F\xBF\xBD (U+10FFFD, private use: in no font)";
  Result<std::string> pdf = TypesetReportPdf(t);
  REQUIRE(pdf.ok());
  CHECK_THAT(TextOf(pdf.value()), Catch::Contains("cannot be shown in this copy"));
}

}  // namespace teleread::test
