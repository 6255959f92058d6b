// The refusals of a submitted report that report_flow_test does not reach, each with its HTTP
// status and reason, and nothing stored: unknown study, wrong media type, a report that is not
// COMPLETE or not VERIFIED, Patient ID or Accession Number of another study, evidence from
// another study, a SOP Instance UID already stored with other content, an amendment of another
// study's report. And delivery: a member that is down holds up no other member's reports.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <map>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"

#include "tests/support/reports.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

class RefusalFixture {
 public:
  RefusalFixture() : server_(dir_.path() / "server") {
    server_.Start();
    PushSampleConsortium(server_, samples(), 2);
    for (const json& item : WaitForWorklist(server_, 6)) {
      if (item["member"] == "zhuozhou" && item["modalities"] == "CT") ct_ = item["study_instance_uid"];
      if (item["member"] == "zhuozhou" && item["modalities"] != "CT") cr_ = item["study_instance_uid"];
    }
    REQUIRE_FALSE(ct_.empty());
    REQUIRE_FALSE(cr_.empty());
    REQUIRE(server_.Call("wang.li", "POST", "/api/v1/studies/" + ct_ + "/claim").status == 200);
  }

  fs::path samples() const { return dir_.path() / "samples"; }

  fs::path Report(const std::string& name, const std::function<void(DcmDataset&)>& tweak = {},
                  const std::optional<InstanceRef>& predecessor = std::nullopt) {
    const fs::path out = dir_.path() / name;
    WriteSignedReport(FindSampleStudy(samples(), ct_), server_.pki(), "wang.li", out, predecessor, "Finding of " + name,
                      true, tweak);
    return out;
  }

  void Refused(const fs::path& report, int status, const std::string& reason, const std::string& study = "",
               const std::string& content_type = "application/dicom") {
    HttpReply r = server_.Call("wang.li", "POST", "/api/v1/studies/" + (study.empty() ? ct_ : study) + "/reports",
                               {"-H", "Content-Type: " + content_type, "--data-binary", "@" + report.string()});
    INFO(report.filename().string() << ": " << r.body);
    CHECK(r.status == status);
    CHECK_THAT(r.body, Catch::Contains(reason));
  }

  size_t StoredReports() {
    HttpReply r = server_.Call("wang.li", "GET", "/api/v1/studies/" + ct_ + "/reports");
    REQUIRE(r.status == 200);
    return r.Json()["items"].size();
  }

 protected:
  ScratchDir dir_;
  TestServer server_;
  std::string ct_, cr_;
};

}  // namespace

TEST_CASE_METHOD(RefusalFixture,
                 "reports with the wrong study, flags, identifiers or evidence are refused with the reason",
                 "[reports]") {
  const fs::path good = Report("good.dcm");
  // A study the centre does not hold (the report made for it, so that it gets past the match).
  const std::string unknown = "1.2.826.0.1.3680043.10.543.404";
  Refused(Report("unknown.dcm", [&](DcmDataset& d) { d.putAndInsertString(DCM_StudyInstanceUID, unknown.c_str()); }),
          404, unknown, unknown);
  Refused(good, 415, "send the signed report as application/dicom", "", "text/plain");
  Refused(Report("partial.dcm", [](DcmDataset& d) { d.putAndInsertString(DCM_CompletionFlag, "PARTIAL"); }), 400,
          "the report is not COMPLETE");
  Refused(Report("unverified.dcm", [](DcmDataset& d) { d.putAndInsertString(DCM_VerificationFlag, "UNVERIFIED"); }),
          400, "the report is not VERIFIED");
  Refused(Report("patient.dcm", [](DcmDataset& d) { d.putAndInsertString(DCM_PatientID, "SOMEONE-ELSE"); }), 400,
          "the report's Patient ID 'SOMEONE-ELSE' is not the study's");
  Refused(Report("accession.dcm", [](DcmDataset& d) { d.putAndInsertString(DCM_AccessionNumber, "OTHER-ACC"); }), 400,
          "the report's Accession Number 'OTHER-ACC' is not the study's");
  // Evidence that names an instance of another study (the CR study of the same hospital).
  SampleStudy with_foreign = FindSampleStudy(samples(), ct_);
  with_foreign.evidence.push_back(FindSampleStudy(samples(), cr_).evidence.front());
  const fs::path foreign = dir_.path() / "foreign-evidence.dcm";
  WriteSignedReport(with_foreign, server_.pki(), "wang.li", foreign);
  Refused(foreign, 400, "is not an instance of the study");
  // A report whose SOP Instance UID is an image's of the study: stored with other content.
  const std::string image_uid = FindSampleStudy(samples(), ct_).evidence.front().sop_instance_uid;
  Refused(Report("clash.dcm", [&](DcmDataset& d) { d.putAndInsertString(DCM_SOPInstanceUID, image_uid.c_str()); }), 409,
          "a different object with SOP Instance UID " + image_uid + " is stored");
  // A report whose audit entry cannot be written is not accepted (fail closed): 503, not the
  // ingest's storage failure (507), and nothing of it is kept; sent again later, it is accepted.
  RefuseAuditEntries(server_.storage(), {"sign"});
  Refused(good, 503, "the audit trail cannot be written");
  AllowAuditEntries(server_.storage());
  CHECK(Sql(server_.storage(), "SELECT count(*) FROM deliveries;") == "0\n");
  CHECK(StoredReports() == 0);
  CHECK(server_.Call("wang.li", "GET", "/api/v1/studies/" + ct_).Json()["task"]["state"] == "claimed");

  // Amending: a report of another study cannot be the predecessor.
  REQUIRE(server_.Call("wang.li", "POST", "/api/v1/studies/" + cr_ + "/claim").status == 200);
  const fs::path cr_report = dir_.path() / "cr.dcm";
  WriteSignedReport(FindSampleStudy(samples(), cr_), server_.pki(), "wang.li", cr_report);
  REQUIRE(SubmitReport(server_, "wang.li", cr_, cr_report).status == 201);
  REQUIRE(SubmitReport(server_, "wang.li", ct_, good).status == 201);
  Refused(Report("amends-cr.dcm", {}, ReportRef(cr_report)), 400, "is no report of this study");
  CHECK(StoredReports() == 1);
}

TEST_CASE("a member that is down holds up no other member's reports", "[reports][delivery]") {
  ScratchDir dir;
  // Zhuozhou's PACS never starts (its port stays reserved: connections are refused); Laishui's runs.
  const uint16_t zz_port = FreePort();
  MemberPacs ls(dir.path() / "ls_pacs", "LS_PACS");
  ServerOptions o;
  o.edits = {{"^port = 11201$", "port = " + std::to_string(zz_port)},
             {"^port = 11202$", "port = " + std::to_string(ls.port())},
             {"^delivery_retry_seconds = .*$", "delivery_retry_seconds = 1"},
             {"^delivery_retry_max_seconds = .*$", "delivery_retry_max_seconds = 2"},
             {"^delivery_timeout_seconds = .*$", "delivery_timeout_seconds = 5"}};
  TestServer server(dir.path() / "server", o);
  server.Start();
  ls.Start();
  const fs::path samples = dir.path() / "samples";
  PushSampleConsortium(server, samples, 1);
  std::string zz_study, ls_study;
  for (const json& item : WaitForWorklist(server, 6)) {
    if (item["member"] == "zhuozhou" && item["modalities"] == "CT") zz_study = item["study_instance_uid"];
    if (item["member"] == "laishui") ls_study = item["study_instance_uid"];
  }
  REQUIRE_FALSE(zz_study.empty());
  REQUIRE_FALSE(ls_study.empty());
  // Zhuozhou's report first, so that it is first in the outbox; zhao.min reads every modality.
  std::map<std::string, std::string> sop;
  for (const std::string& study : {zz_study, ls_study}) {
    REQUIRE(server.Call("zhao.min", "POST", "/api/v1/studies/" + study + "/claim").status == 200);
    const fs::path report = dir.path() / (study + ".dcm");
    WriteSignedReport(FindSampleStudy(samples, study), server.pki(), "zhao.min", report);
    HttpReply r = SubmitReport(server, "zhao.min", study, report);
    INFO(r.body);
    REQUIRE(r.status == 201);
    sop[study] = r.Json()["sop_instance_uid"];
  }
  auto delivery = [&](const std::string& study) {
    return server.Call("wang.li", "GET", "/api/v1/studies/" + study + "/reports").Json()["items"][0]["delivery"];
  };
  REQUIRE(WaitFor([&] { return delivery(ls_study)["state"] == "delivered"; }, 60));
  CHECK(ls.Received(sop[ls_study]) == 1);
  // Meanwhile Zhuozhou's waits, retried, not given up.
  REQUIRE(WaitFor([&] { return delivery(zz_study)["attempts"].get<int>() >= 2; }, 60));
  CHECK(delivery(zz_study)["state"] == "pending");
  CHECK(server.Stop() == 0);
}
