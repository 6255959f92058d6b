// The two storage tiers end to end: objects of at most small_object_bytes, pushed with storescu,
// are kept inside the index and come back byte for byte through C-GET, the HTTPS API and
// `teleread-server export`; a larger one is a file under objects/ as before.
#include <catch2/catch.hpp>

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "tests/support/server_fixture.h"
#include "tests/support/stored.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

bool Echo(uint16_t port, const std::string& calling_ae) {
  return RunCommand({ECHOSCU_BIN, "-aet", calling_ae, "-aec", "LX_READ", "127.0.0.1", std::to_string(port)})
             .exit_code == 0;
}

struct Sent {
  std::string study, sop;
  fs::path file;
};

Sent Series(const fs::path& dir, const std::string& patient_id, int size, int instances, std::vector<Sent>* all) {
  samples::SeriesSpec spec;
  spec.patient_name = "Tier^Test";
  spec.patient_id = patient_id;
  spec.rows = spec.columns = size;
  spec.instances = instances;
  auto files = samples::WriteSeries(spec, dir);
  REQUIRE(files.ok());
  for (const fs::path& f : files.value()) {
    auto s = ReadInstanceSummary(f);
    REQUIRE(s.ok());
    all->push_back(Sent{s->study_instance_uid, s->sop_instance_uid, f});
  }
  return all->back();
}

}  // namespace

TEST_CASE("small objects pushed with storescu are kept in the index and come back byte for byte",
          "[tiers][ingest][qr][https]") {
  InitializeDicom();
  ScratchDir dir;
  std::vector<Sent> sent;
  const Sent small = Series(dir.path() / "in" / "small", "TIER1", 16, 3, &sent);   // ~1 kB each
  const Sent large = Series(dir.path() / "in" / "large", "TIER2", 512, 1, &sent);  // ~0.5 MB
  TestServer server(dir.path() / "server");
  server.Start();
  const CommandResult pushed = StoreFiles(server, "ZZ_PACS", {(dir.path() / "in").string()});
  REQUIRE(StoreResponses(pushed) == std::vector<std::string>(4, "Success"));

  // The tiers: three rows with their bytes in the index, one range of a segment.
  CHECK(InIndexObjectCount(server.storage()) == 3);
  CHECK(InSegmentObjectCount(server.storage()) == 1);
  CHECK(CountFiles(server.storage() / "objects", true) == 0);
  CHECK(IndexedPaths(server.storage()) == FilesUnder(server.storage()));
  std::map<std::string, std::string> stored;  // SOP Instance UID -> the bytes stored
  for (const Sent& s : sent) {
    const fs::path f = StoredFileFor(server.storage(), s.sop, dir.path() / "stored");
    REQUIRE_FALSE(f.empty());
    stored[s.sop] = ReadFile(f);
    INFO(s.file);
    CHECK(DataSetBytes(stored[s.sop]) == DataSetBytes(ReadFile(s.file)));  // as sent, bit for bit
  }

  SECTION("the bytes kept in the index are those DCMTK's storescp writes bit-preserving (+B), meta header too") {
    // storescp +B receives with DIMSE_createFilestream, whose meta header the centre writes itself.
    const uint16_t port = FreePort();
    const fs::path received = dir.path() / "storescp";
    fs::create_directories(received);
    ChildProcess storescp;
    ReleasePort(port);
    storescp.Start({STORESCP_BIN, "+B", "-aet", "LX_READ", "-od", received.string(), std::to_string(port)},
                   dir.path() / "storescp.log");
    REQUIRE(WaitFor([&] { return Echo(port, "ZZ_PACS"); }, 20));
    REQUIRE(StoreResponses(StoreTo(port, "ZZ_PACS", {small.file.string()})) == std::vector<std::string>{"Success"});
    storescp.Stop(15);
    const std::vector<fs::path> files = ListFiles(received);
    REQUIRE(files.size() == 1);
    CHECK(ReadFile(files[0]) == stored[small.sop]);
  }

  SECTION("C-GET sends the data set of an object kept in the index unchanged") {
    const fs::path got = dir.path() / "got";
    fs::create_directories(got);
    CommandResult r = RunCommand({GETSCU_BIN, "-S", "-aet", "ZZ_PACS", "-aec", "LX_READ", "-od", got.string(), "-k",
                                  "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + small.study, "127.0.0.1",
                                  server.port_text()});
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    const std::vector<fs::path> files = ListFiles(got);
    REQUIRE(files.size() == 3);
    for (const fs::path& f : files) {
      auto s = ReadInstanceSummary(f);
      REQUIRE(s.ok());
      REQUIRE(stored.count(s->sop_instance_uid));
      CHECK(DataSetBytes(ReadFile(f)) == DataSetBytes(stored[s->sop_instance_uid]));
    }
  }

  SECTION("the HTTPS API serves the stored bytes, alone and in the study archive") {
    const fs::path one = dir.path() / "one.dcm";
    REQUIRE(
        server
            .Curl("wang.li", "GET", "/api/v1/studies/" + small.study + "/instances/" + small.sop, {"-o", one.string()})
            .output == "\n200");
    CHECK(ReadFile(one) == stored[small.sop]);
    const fs::path tar = dir.path() / "study.tar";
    REQUIRE(server.Curl("wang.li", "GET", "/api/v1/studies/" + small.study + "/archive", {"-o", tar.string()}).output ==
            "\n200");
    const std::string archive = ReadFile(tar);
    for (const Sent& s : sent) {
      if (s.study != small.study) continue;
      CHECK(archive.find(stored[s.sop]) != std::string::npos);
    }
  }

  SECTION("export writes each study as plain DICOM files, while the server runs and after it stopped") {
    auto run_export = [&](const std::vector<std::string>& what, const fs::path& out) {
      std::vector<std::string> argv = {TELEREAD_SERVER_BIN,           "--config",
                                       server.config_path().string(), "--storage",
                                       server.storage().string(),     "export"};
      argv.insert(argv.end(), what.begin(), what.end());
      argv.insert(argv.end(), {"-o", out.string()});
      return RunCommand(argv);
    };
    auto check_exported = [&](const fs::path& out, size_t expected) {
      const std::vector<fs::path> files = ListFiles(out);
      CHECK(files.size() == expected);
      for (const fs::path& f : files) {
        INFO(f);
        CHECK(RunCommand({"/usr/bin/dcmftest", f.string()}).exit_code == 0);
        auto s = ReadInstanceSummary(f);
        REQUIRE(s.ok());
        REQUIRE(stored.count(s->sop_instance_uid));
        CHECK(ReadFile(f) == stored[s->sop_instance_uid]);  // byte-identical to what is stored
        CHECK(f.filename() == s->sop_instance_uid + ".dcm");
      }
    };
    CommandResult running = run_export({small.study, large.study}, dir.path() / "export-running");
    INFO(running.output);
    REQUIRE(running.exit_code == 0);
    CHECK_THAT(running.output, Catch::Contains("exported 2 studies, 4 file(s)"));
    check_exported(dir.path() / "export-running", 4);

    CommandResult unknown = run_export({"1.2.826.0.1.3680043.99.1"}, dir.path() / "export-unknown");
    CHECK(unknown.exit_code == 1);
    CHECK_THAT(unknown.output, Catch::Contains("no study 1.2.826.0.1.3680043.99.1 is stored"));
    CHECK_FALSE(fs::exists(dir.path() / "export-unknown"));

    REQUIRE(server.Stop() == 0);
    CommandResult stopped = run_export({"--member", "zhuozhou"}, dir.path() / "export-stopped");
    INFO(stopped.output);
    REQUIRE(stopped.exit_code == 0);
    check_exported(dir.path() / "export-stopped", 4);
  }
}
