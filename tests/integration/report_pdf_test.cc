// The PDF copy of each signed report, end to end: made on the server from the accepted SR,
// delivered with it to a real member PACS (storescp) exactly once each, valid for dicom3tools'
// dciodvfy, readable by poppler's pdftotext (Chinese findings, the patient's name, the signing
// certificate's fingerprint), found by C-FIND and fetched by C-GET like any instance, served by
// the API and saved by `teleread report get --pdf` within the report's access rules; an
// amendment gets its own copy.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/encapsulated_pdf.h"
#include "tests/support/reports.h"
#include "tests/support/server_fixture.h"
#include "tests/support/skip.h"

using namespace teleread;
using namespace teleread::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Long enough to wrap over several lines of the page: Chinese has no spaces to break at.
const std::string kFindings =
    "右肺上叶尖后段见一直径约8mm磨玻璃结节，边界清楚，内见空泡征；右肺中叶外侧段见条索状影。"
    "纵隔内未见明显肿大淋巴结，双侧胸腔未见积液，心影大小形态正常，主动脉壁可见钙化斑块。"
    "所见胸椎椎体边缘骨质增生，余骨质结构未见明显异常。";

std::string WithoutSpace(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c != ' ' && c != '\n' && c != '\r' && c != '\f' && c != '\t') out += c;
  }
  return out;
}

// pdftotext's UTF-8 text of a PDF file.
std::string PdfText(const fs::path& pdf) {
  const fs::path txt = pdf.string() + ".txt";
  CommandResult r = RunCommand({PDFTOTEXT_BIN, "-enc", "UTF-8", pdf.string(), txt.string()});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  return ReadFile(txt);
}

// The matches of a C-FIND that findscu -v printed.
int CountMatches(const std::string& output) { return CountOccurrences(output, " (Pending)"); }

}  // namespace

TEST_CASE(
    "each signed report and amendment gets a PDF copy, delivered once with it, found and fetched like any "
    "instance",
    "[reports][pdf]") {
  if (std::string(PDFTOTEXT_BIN).empty()) TELEREAD_SKIP("pdftotext (poppler-utils) is not installed");
  ScratchDir dir;
  MemberPacs pacs(dir.path() / "zz_pacs", "ZZ_PACS");
  ServerOptions o;
  o.edits = {{"^port = 11201$", "port = " + std::to_string(pacs.port())},
             {"^delivery_retry_seconds = .*$", "delivery_retry_seconds = 1"}};
  TestServer server(dir.path() / "server", o);
  server.Start();
  pacs.Start();
  PushSampleConsortium(server, dir.path() / "samples", 2);
  const std::string ct = WaitForOneStudy(server, "member=zhuozhou&modality=CT");
  REQUIRE(server.Call("wang.li", "POST", "/api/v1/studies/" + ct + "/claim").status == 200);
  const SampleStudy study = FindSampleStudy(dir.path() / "samples", ct);
  const fs::path report = dir.path() / "report.dcm";
  WriteSignedReport(study, server.pki(), "wang.li", report, std::nullopt, kFindings, true, {}, true);
  HttpReply accepted = SubmitReport(server, "wang.li", ct, report);
  INFO(accepted.body);
  REQUIRE(accepted.status == 201);
  const std::string sop = accepted.Json()["sop_instance_uid"];
  const std::string series = accepted.Json()["series_instance_uid"];
  REQUIRE(accepted.Json()["pdf_sop_instance_uid"].is_string());
  const std::string pdf_sop = accepted.Json()["pdf_sop_instance_uid"];

  // Both reach the member, the SR first, once each (storescp keeps every receipt).
  auto delivered = [&](const std::string& report_sop) {
    const json reports = server.Call("wang.li", "GET", "/api/v1/studies/" + ct + "/reports").Json();
    for (const json& i : reports["items"]) {
      if (i["sop_instance_uid"] == report_sop) {
        return i["delivery"]["state"] == "delivered" && !i["pdf"].is_null() &&
               i["pdf"]["delivery"]["state"] == "delivered";
      }
    }
    return false;
  };
  if (!WaitFor([&] { return delivered(sop); })) {
    FAIL(server.Call("wang.li", "GET", "/api/v1/studies/" + ct + "/reports").body);
  }
  CHECK(pacs.Received(sop) == 1);
  CHECK(pacs.Received(pdf_sop) == 1);
  CHECK(pacs.Files().size() == 2);
  const std::string log = server.Log();
  CHECK(log.find("report " + sop + " delivered to zhuozhou") <
        log.find("PDF copy " + pdf_sop + " of report " + sop + " delivered to zhuozhou"));
  CHECK_THAT(log, Catch::Contains("PDF copy " + pdf_sop + " of report " + sop + ": "));

  // The member's copy is a valid Encapsulated PDF instance of the report's series ...
  const fs::path received = pacs.FileOf(pdf_sop);
  REQUIRE_FALSE(received.empty());
  CommandResult valid = RunCommand({DCIODVFY_BIN, received.string()});
  INFO(valid.output);
  CHECK_THAT(valid.output, Catch::Contains("EncapsulatedPDF") && !Catch::Contains("Error"));
  Result<InstanceSummary> summary = ReadInstanceSummary(received);
  REQUIRE(summary.ok());
  CHECK(summary->sop_class_uid == kEncapsulatedPdfClass);
  CHECK(summary->series_instance_uid == series);
  CHECK(summary->study_instance_uid == ct);
  CHECK(summary->patient_id == "ZZ100234");

  // ... whose PDF reads back as text: the Chinese findings (wrapped over lines), the patient, the
  // critical flag, the signer's certificate fingerprint and what is authoritative.
  Result<std::string> pdf = ReadEncapsulatedPdf(received);
  REQUIRE(pdf.ok());
  CHECK(pdf->rfind("%PDF-", 0) == 0);
  WriteFile(dir.path() / "member.pdf", pdf.value());
  const std::string text = PdfText(dir.path() / "member.pdf");
  INFO(text);
  CHECK_THAT(text, !Catch::Contains(kFindings));  // wrapped: not all on one line
  const std::string flat = WithoutSpace(text);
  CHECK_THAT(flat, Catch::Contains(WithoutSpace(kFindings)));
  CHECK_THAT(flat, Catch::Contains("张三") && Catch::Contains("ZZ100234") && Catch::Contains("ZZ26112001"));
  CHECK_THAT(flat, Catch::Contains("CRITICALRESULT") && Catch::Contains("authoritativecopy"));
  CommandResult fingerprint = RunCommand(
      {"openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", (server.pki() / "wang.li.pem").string()});
  const std::string sha256 = fingerprint.output.substr(fingerprint.output.find('=') + 1, 95);
  CHECK_THAT(flat, Catch::Contains(sha256));

  // C-FIND at IMAGE level in the report's series finds both; C-GET fetches the copy.
  CommandResult find =
      RunCommand({FINDSCU_BIN, "-v", "-S", "-aet", "ZZ_PACS", "-aec", "LX_READ", "-k", "QueryRetrieveLevel=IMAGE", "-k",
                  "StudyInstanceUID=" + ct, "-k", "SeriesInstanceUID=" + series, "-k", "SOPInstanceUID", "-k",
                  "SOPClassUID", "127.0.0.1", server.port_text()});
  INFO(find.output);
  CHECK(CountMatches(find.output) == 2);
  CHECK_THAT(find.output, Catch::Contains(pdf_sop) && Catch::Contains("EncapsulatedPDFStorage"));
  const fs::path got = dir.path() / "got";
  fs::create_directories(got);
  CommandResult get =
      RunCommand({GETSCU_BIN, "-S", "-aet", "ZZ_PACS", "-aec", "LX_READ", "-k", "QueryRetrieveLevel=IMAGE", "-k",
                  "StudyInstanceUID=" + ct, "-k", "SeriesInstanceUID=" + series, "-k", "SOPInstanceUID=" + pdf_sop,
                  "-od", got.string(), "127.0.0.1", server.port_text()});
  INFO(get.output);
  REQUIRE(CountFiles(got) == 1);
  Result<std::string> fetched = ReadEncapsulatedPdf(fs::directory_iterator(got)->path());
  REQUIRE(fetched.ok());
  CHECK(fetched.value() == pdf.value());

  // The API serves the document itself to the owning member and the centre.
  IssueCert(server.pki(), "member", "ZZ_PACS");
  IssueCert(server.pki(), "member", "LS_PACS");
  CommandResult api =
      server.Curl("ZZ_PACS", "GET", "/api/v1/reports/" + sop + "/pdf", {"-o", (dir.path() / "api.pdf").string()});
  CHECK_THAT(api.output, Catch::EndsWith("200"));
  CHECK(ReadFile(dir.path() / "api.pdf") == pdf.value());
  // Another member's report is absent to it, as the SR itself is: no probing of other hospitals' UIDs.
  CHECK(server.Call("LS_PACS", "GET", "/api/v1/reports/" + sop + "/pdf").status == 404);
  CHECK(server.Call("LS_PACS", "GET", "/api/v1/reports/" + sop).status == 404);
  CHECK(server.Call("ops", "GET", "/api/v1/reports/" + sop + "/pdf").status == 200);
  CHECK(server.Call("wang.li", "GET", "/api/v1/reports/1.2.3.4/pdf").status == 404);
  CHECK(AuditTrail(server.storage(), "download").size() >= 2);

  // The CLI saves the PDF document (not its DICOM wrapper).
  const fs::path profile = WriteProfile(server, "wang.li", dir.path() / "wang.li.toml");
  const fs::path saved = dir.path() / "cli.pdf";
  CommandResult cli = RunCommand(
      {TELEREAD_CLI_BIN, "--profile", profile.string(), "report", "get", sop, "--pdf", "-o", saved.string()});
  INFO(cli.output);
  CHECK(cli.exit_code == 0);
  CHECK(ReadFile(saved).rfind("%PDF-", 0) == 0);
  CHECK_THAT(WithoutSpace(PdfText(saved)), Catch::Contains(WithoutSpace(kFindings)));

  // An amendment gets a copy of its own, delivered once with it; nothing is sent twice.
  const fs::path amended = dir.path() / "amended.dcm";
  WriteSignedReport(study, server.pki(), "wang.li", amended, ReportRef(report), "更正：右肺上叶结节直径约6mm。");
  HttpReply amendment = SubmitReport(server, "wang.li", ct, amended);
  INFO(amendment.body);
  REQUIRE(amendment.status == 201);
  const std::string sop2 = amendment.Json()["sop_instance_uid"], pdf2 = amendment.Json()["pdf_sop_instance_uid"];
  CHECK(pdf2 != pdf_sop);
  if (!WaitFor([&] { return delivered(sop2); })) FAIL(server.Log());
  CHECK(pacs.Files().size() == 4);
  for (const std::string& uid : {sop, pdf_sop, sop2, pdf2}) CHECK(pacs.Received(uid) == 1);
  Result<std::string> pdf_amended = ReadEncapsulatedPdf(pacs.FileOf(pdf2));
  REQUIRE(pdf_amended.ok());
  WriteFile(dir.path() / "amended.pdf", pdf_amended.value());
  const std::string amended_text = WithoutSpace(PdfText(dir.path() / "amended.pdf"));
  CHECK_THAT(amended_text, Catch::Contains("更正报告") && Catch::Contains("右肺上叶结节直径约6mm") &&
                               Catch::Contains(WithoutSpace(sop)));
  CHECK(server.Call("ZZ_PACS", "GET", "/api/v1/reports/" + sop2 + "/pdf").status == 200);

  pacs.Stop();
  CHECK(server.Stop() == 0);
}
