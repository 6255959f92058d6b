// Storage commitment: a member's N-ACTION commits what the centre holds for it, failures come
// back with reasons, and a fully committed study is a reading task at once, long before the
// quiet period (an hour here). DCMTK as the requester on the same association; Orthanc as the
// member PACS that takes the N-EVENT-REPORT on a new association.
#include <catch2/catch.hpp>
#include <map>
#include <nlohmann/json.hpp>

#include "common/dicom.h"
#include "samples/commit_scu.h"
#include "tests/support/orthanc.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
using teleread::samples::CommitPeer;
using teleread::samples::CommitReply;
using teleread::samples::RequestCommitment;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

using Refs = std::vector<std::pair<std::string, std::string>>;

struct SampleStudies {
  std::map<std::string, Refs> by_study;         // Study Instance UID -> its instances
  std::map<std::string, std::string> modality;  // Study Instance UID -> modality
};

SampleStudies Read(const fs::path& dir) {
  SampleStudies s;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    Result<InstanceSummary> sum = ReadInstanceSummary(e.path());
    if (!sum.ok()) continue;
    s.by_study[sum->study_instance_uid].emplace_back(sum->sop_class_uid, sum->sop_instance_uid);
    s.modality[sum->study_instance_uid] = sum->modality;
  }
  return s;
}

std::string StudyOf(const SampleStudies& s, const std::string& modality) {
  for (const auto& [uid, m] : s.modality) {
    if (m == modality) return uid;
  }
  return "";
}

CommitPeer Peer(const TestServer& server, const std::string& ae) {
  CommitPeer p;
  p.port = server.port();
  p.calling_ae = ae;
  return p;
}

bool HasTask(const TestServer& server, const std::string& study) {
  HttpReply r = server.Call("ops", "GET", "/api/v1/studies/" + study);
  return r.status == 200 && !r.Json()["task"].is_null();
}

}  // namespace

TEST_CASE("storage commitment commits what the centre holds and completes the study at once", "[commitment]") {
  InitializeDicom();
  ScratchDir dir;
  ServerOptions o;
  o.quiet_period_seconds = 3600;  // only commitment can complete a study within this test
  TestServer server(dir.path() / "server", o);
  server.Start();
  const fs::path samples = WriteSampleConsortium(dir.path() / "samples", 2);
  REQUIRE(StoreFiles(server, "ZZ_PACS", {(samples / "ZZ_PACS").string()}).exit_code == 0);
  REQUIRE(StoreFiles(server, "LS_PACS", {(samples / "LS_PACS").string()}).exit_code == 0);
  const SampleStudies zz = Read(samples / "ZZ_PACS"), ls = Read(samples / "LS_PACS");
  const std::string ct = StudyOf(zz, "CT");
  REQUIRE_FALSE(ct.empty());
  const Refs& slices = zz.by_study.at(ct);
  REQUIRE(slices.size() == 2);
  const auto& other_member = ls.by_study.begin()->second.front();

  // Part of the study, a never-received instance, a wrong class, and another member's instance.
  CommitReply partial = RequestCommitment(Peer(server, "ZZ_PACS"),
                                          {slices[0],
                                           {slices[0].first, "1.2.3.4.5.6.7.8.9"},
                                           {"1.2.840.10008.5.1.4.1.1.4", slices[1].second},
                                           other_member},
                                          "1.2.826.0.1.3680043.10.1.1", true);
  INFO(partial.error);
  REQUIRE(partial.error.empty());
  CHECK(partial.action_status == 0);
  CHECK(partial.event_type == 2);
  CHECK(partial.transaction_uid == "1.2.826.0.1.3680043.10.1.1");
  CHECK(partial.committed == std::vector<std::string>{slices[0].second});
  REQUIRE(partial.failed.size() == 3);
  CHECK(partial.failed[0] == std::pair<std::string, uint16_t>{"1.2.3.4.5.6.7.8.9", 0x0112});
  CHECK(partial.failed[1] == std::pair<std::string, uint16_t>{slices[1].second, 0x0119});
  CHECK(partial.failed[2] == std::pair<std::string, uint16_t>{other_member.second, 0x0112});
  CHECK_FALSE(HasTask(server, ct));  // one slice is not committed yet

  CommitReply all = RequestCommitment(Peer(server, "ZZ_PACS"), slices, "1.2.826.0.1.3680043.10.1.2", true);
  INFO(all.error);
  REQUIRE(all.error.empty());
  CHECK(all.event_type == 1);
  CHECK(all.committed.size() == 2);
  CHECK(all.failed.empty());
  // The task was created in the commitment's transaction: there when the report arrives.
  CHECK(HasTask(server, ct));
  CHECK(server.Call("ops", "GET", "/api/v1/worklist").Json()["items"].size() == 1);
  CHECK_THAT(server.Log(), Catch::Contains("1 study complete: queued for reading"));

  // A centre AE title commits nothing for anyone.
  CommitReply centre = RequestCommitment(Peer(server, "LX_WS1"), slices, "1.2.826.0.1.3680043.10.1.3", true);
  CHECK(centre.action_status == 0x0110);
  CHECK(centre.event_type == 0);
}

TEST_CASE("Orthanc as the member requests storage commitment and takes the report on a new association",
          "[commitment][orthanc]") {
  InitializeDicom();
  ScratchDir dir;
  const uint16_t orthanc_port = FreePort();
  ServerOptions o;
  o.quiet_period_seconds = 3600;
  o.edits = {{"^port = 11201$", "port = " + std::to_string(orthanc_port)}};
  TestServer server(dir.path() / "server", o);
  server.Start();
  OrthancPacs orthanc(dir.path() / "orthanc", "ZZ_PACS", orthanc_port,
                      R"("DicomModalities": { "centre": ["LX_READ", "127.0.0.1", )" + server.port_text() + R"(] },)");
  orthanc.Start();
  const fs::path samples = WriteSampleConsortium(dir.path() / "samples", 2);
  REQUIRE(StoreFiles(server, "ZZ_PACS", {(samples / "ZZ_PACS").string()}).exit_code == 0);
  const SampleStudies zz = Read(samples / "ZZ_PACS");
  const std::string ct = StudyOf(zz, "CT");
  json instances = json::array();
  for (const auto& [cls, inst] : zz.by_study.at(ct))
    instances.push_back(json{{"SOPClassUID", cls}, {"SOPInstanceUID", inst}});
  CommandResult asked = orthanc.Rest({"/modalities/centre/storage-commitment", "-X", "POST", "-d",
                                      json{{"DicomInstances", instances}, {"Timeout", 30}}.dump()});
  INFO(asked.output);
  REQUIRE(asked.exit_code == 0);
  const json job = json::parse(asked.output, nullptr, false);
  REQUIRE(job.contains("ID"));
  std::string status;
  CHECK(WaitFor([&] {
    CommandResult r = orthanc.Rest({"/storage-commitment/" + job["ID"].get<std::string>()});
    json j = json::parse(r.output, nullptr, false);
    status = j.is_object() ? j.value("Status", "") : "";
    return status == "Success";
  }));
  CHECK(status == "Success");
  CHECK(HasTask(server, ct));
  CHECK_THAT(server.Log(), Catch::Contains("report sent to ZZ_PACS (2 committed, 0 failed)"));
  orthanc.Stop();
}
