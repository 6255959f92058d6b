#include "tests/support/reports.h"

#include <catch2/catch.hpp>
#include <thread>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcfilefo.h"

#include "common/dicom.h"
#include "common/signing.h"

namespace teleread::test {

namespace fs = std::filesystem;

SampleStudy FindSampleStudy(const fs::path& samples_dir, const std::string& study_uid) {
  static const bool initialized = (InitializeDicom(), true);
  (void)initialized;
  SampleStudy study{study_uid, {}, {}};
  for (const auto& e : fs::recursive_directory_iterator(samples_dir)) {
    if (!e.is_regular_file()) continue;
    Result<InstanceSummary> s = ReadInstanceSummary(e.path());
    if (!s.ok() || s->study_instance_uid != study_uid) continue;
    study.files.push_back(e.path());
    study.evidence.push_back(InstanceRef{s->series_instance_uid, s->sop_class_uid, s->sop_instance_uid});
  }
  REQUIRE_FALSE(study.files.empty());
  return study;
}

void WriteSignedReport(const SampleStudy& study, const fs::path& pki_dir, const std::string& signer,
                       const fs::path& out, const std::optional<InstanceRef>& predecessor, const std::string& findings,
                       bool check_validity, const std::function<void(DcmDataset&)>& tweak, bool critical) {
  ReportRequest r;
  r.content.findings = findings;
  r.content.critical = critical;
  r.content.impression = "右肺上叶磨玻璃结节，建议3个月后复查。";
  r.content.radiologist_id = signer;
  r.content.radiologist_name = signer;
  r.content.organization = "Lixian Regional Imaging Reading Centre";
  r.study_instance = study.files.front();
  r.evidence = study.evidence;
  r.predecessor = predecessor;
  const fs::path unsigned_sr = out.string() + ".unsigned";
  Status s = WriteReport(r, unsigned_sr);
  INFO(s.ToString());
  REQUIRE(s.ok());
  if (tweak) {
    DcmFileFormat ff;
    REQUIRE(ff.loadFile(unsigned_sr.c_str()).good());
    tweak(*ff.getDataset());
    REQUIRE(ff.saveFile(unsigned_sr.c_str(), ff.getDataset()->getOriginalXfer()).good());
  }
  s = SignReportFile(unsigned_sr, out, pki_dir / (signer + ".pem"), pki_dir / (signer + ".key"), "", check_validity);
  INFO(s.ToString());
  REQUIRE(s.ok());
}

InstanceRef ReportRef(const fs::path& report) {
  Result<ReportInfo> info = ReadReport(report);
  REQUIRE(info.ok());
  return InstanceRef{info->series_instance_uid, info->sop_class_uid, info->sop_instance_uid};
}

HttpReply SubmitReport(const TestServer& server, const std::string& who, const std::string& study_uid,
                       const fs::path& report) {
  return server.Call(who, "POST", "/api/v1/studies/" + study_uid + "/reports",
                     {"-H", "Content-Type: application/dicom", "--data-binary", "@" + report.string()});
}

MemberPacs::MemberPacs(fs::path dir, std::string ae_title, std::vector<std::string> tls_args)
    : dir_(std::move(dir)), ae_title_(std::move(ae_title)), tls_args_(std::move(tls_args)), port_(FreePort()) {
  fs::create_directories(dir_ / "in");
}

void MemberPacs::Start() {
  std::vector<std::string> scp = {STORESCP_BIN, "-aet", ae_title_, "--unique-filenames", "-od", (dir_ / "in").string()};
  std::vector<std::string> echo = {ECHOSCU_BIN, "-aec", ae_title_};
  for (auto* argv : {&scp, &echo}) argv->insert(argv->end(), tls_args_.begin(), tls_args_.end());
  scp.push_back(std::to_string(port_));
  echo.insert(echo.end(), {"127.0.0.1", std::to_string(port_)});
  ReleasePort(port_);  // reserved by FreePort until now
  process_.Start(scp, dir_ / "storescp.log");
  // Listening once an echo is answered.
  for (int i = 0; i < 100; ++i) {
    if (RunCommand(echo).exit_code == 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  FAIL("storescp did not start");
}

void MemberPacs::Stop() { process_.Stop(15); }

std::vector<fs::path> MemberPacs::Files() const {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir_ / "in")) out.push_back(e.path());
  return out;
}

int MemberPacs::Received(const std::string& sop_instance_uid) const {
  int n = 0;
  for (const auto& [file, uid] : Receipts()) n += uid == sop_instance_uid;
  return n;
}

fs::path MemberPacs::FileOf(const std::string& sop_instance_uid) const {
  for (const auto& [file, uid] : Receipts()) {
    if (uid == sop_instance_uid) return file;
  }
  return {};
}

std::vector<std::pair<fs::path, std::string>> MemberPacs::Receipts() const {
  static const bool initialized = (InitializeDicom(), true);
  (void)initialized;
  std::vector<std::pair<fs::path, std::string>> out;
  for (const fs::path& f : Files()) {
    // storescp may still be writing the newest file: read it again until it parses.
    std::string uid;
    bool read = WaitFor(
        [&] {
          Result<InstanceSummary> s = ReadInstanceSummary(f);
          if (s.ok()) uid = s->sop_instance_uid;
          return s.ok();
        },
        10);
    INFO(f.string());
    REQUIRE(read);
    out.emplace_back(f, uid);
  }
  return out;
}

}  // namespace teleread::test
