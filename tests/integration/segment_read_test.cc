// Objects held as byte ranges of a segment file (an index path "segments/<name>@<offset>+<length>",
// store/README.md): every reader reads the range where it lies and nothing around it. The segment
// is made here from objects the server stored as files, each between bytes of no object, and their
// rows are pointed at it; the files are removed, so that only the segment can serve them.
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcuid.h"

#include <map>

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "server/store/sqlite.h"
#include "tests/support/server_fixture.h"
#include "tests/support/stored.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

// Moves every stored object file into storage/segments/00000001.seg, `gap` bytes of 0xEE before
// each object and after the last; returns SOP Instance UID -> the object's bytes.
std::map<std::string, std::string> Repack(const fs::path& storage, size_t gap) {
  auto db = Database::Open(storage / "index.sqlite", false);
  REQUIRE(db.ok());
  std::vector<std::pair<std::string, std::string>> rows;  // uid, path
  {
    Statement q(db.value()->handle(), "SELECT sop_instance_uid, path FROM instances ORDER BY id");
    for (;;) {
      Result<bool> row = q.Step();
      REQUIRE(row.ok());
      if (!row.value()) break;
      rows.emplace_back(q.Text(0), q.Text(1));
    }
  }
  std::map<std::string, std::string> stored;
  std::string segment(gap, '\xEE');
  for (const auto& [uid, path] : rows) {
    REQUIRE(path.rfind("objects/", 0) == 0);
    const std::string bytes = ReadFile(storage / path);
    const std::string at =
        "segments/00000001.seg@" + std::to_string(segment.size()) + "+" + std::to_string(bytes.size());
    segment += bytes + std::string(gap, '\xEE');
    REQUIRE(db.value()->Exec("UPDATE instances SET path = '" + at + "' WHERE sop_instance_uid = '" + uid + "'").ok());
    fs::remove(storage / path);
    stored[uid] = bytes;
  }
  fs::create_directories(storage / "segments");
  WriteFile(storage / "segments" / "00000001.seg", segment);
  return stored;
}

}  // namespace

TEST_CASE("objects inside a segment are read where they lie by C-GET, C-MOVE, the API, its archive and export",
          "[store][segment]") {
  InitializeDicom();
  ScratchDir dir;
  samples::SeriesSpec spec;
  spec.patient_name = "Segment^Test";
  spec.patient_id = "SEG1";
  spec.instances = 3;
  spec.rows = spec.columns = 64;
  auto files = samples::WriteSeries(spec, dir.path() / "in");
  REQUIRE(files.ok());
  auto first = ReadInstanceSummary(files->front());
  REQUIRE(first.ok());
  const std::string study = first->study_instance_uid;
  ServerOptions options;
  options.small_object_bytes = 0;  // files, to be moved into the segment
  options.segment_mb = 0;
  const uint16_t zz_port = FreePort();
  options.edits.push_back(ZhuozhouDeliveryPort(zz_port));
  TestServer server(dir.path() / "server", options);
  server.Start();
  REQUIRE(StoreFiles(server, "ZZ_PACS", {(dir.path() / "in").string()}).exit_code == 0);
  REQUIRE(server.Stop() == 0);
  const std::map<std::string, std::string> stored = Repack(server.storage(), 4097);
  REQUIRE(stored.size() == 3);
  CHECK(ListFiles(server.storage() / "objects").empty());
  server.Start();

  // Each file received holds one stored object's data set, bit for bit.
  auto check_received = [&](const fs::path& got) {
    const std::vector<fs::path> received = ListFiles(got);
    CHECK(received.size() == 3);
    for (const fs::path& f : received) {
      auto s = ReadInstanceSummary(f);
      REQUIRE(s.ok());
      REQUIRE(stored.count(s->sop_instance_uid));
      CHECK(DataSetBytes(ReadFile(f)) == DataSetBytes(stored.at(s->sop_instance_uid)));
    }
  };
  SECTION("C-GET sends each data set as stored") {
    // 4 KiB PDUs: each ~8.5 KB data set goes in three.
    CommandResult r = GetStudy(server, "ZZ_PACS", study, dir.path() / "got", {"-pdu", "4096"});
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    check_received(dir.path() / "got");
  }

  auto move = [&](const fs::path& got, const std::vector<std::string>& extra) {
    fs::create_directories(got);
    ReleasePort(zz_port);
    std::vector<std::string> argv = {MOVESCU_BIN, "-S",   "-aet",    "ZZ_PACS",   "-aec",
                                     "LX_READ",   "-aem", "ZZ_PACS", "+P",        std::to_string(zz_port),
                                     "-pdu",      "4096", "-od",     got.string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.insert(argv.end(),
                {"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study, "127.0.0.1", server.port_text()});
    return RunCommand(argv);
  };
  SECTION("C-MOVE sends each data set as stored") {
    CommandResult r = move(dir.path() / "moved", {});
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    check_received(dir.path() / "moved");
    CHECK_THAT(server.Log(), Catch::Contains("C-MOVE from ZZ_PACS (zhuozhou): 3 sent, 0 failed"));
  }

  SECTION("C-MOVE to a destination that takes implicit VR only: each data set re-encoded, the same elements") {
    CommandResult r = move(dir.path() / "moved-implicit", {"+xi"});
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    const std::vector<fs::path> received = ListFiles(dir.path() / "moved-implicit");
    REQUIRE(received.size() == 3);
    for (const fs::path& f : received) {
      auto s = ReadInstanceSummary(f);
      REQUIRE(s.ok());
      CHECK(s->transfer_syntax_uid == UID_LittleEndianImplicitTransferSyntax);
      const fs::path copy = dir.path() / (s->sop_instance_uid + ".dcm");
      WriteFile(copy, stored.at(s->sop_instance_uid));
      Result<bool> same = SameDataSet(f, copy);
      REQUIRE(same.ok());
      CHECK(same.value());
    }
  }

  SECTION("the API serves each object's bytes, alone and in the study archive") {
    const fs::path tar = dir.path() / "study.tar";
    REQUIRE(server.Curl("wang.li", "GET", "/api/v1/studies/" + study + "/archive", {"-o", tar.string()}).output ==
            "\n200");
    const std::string archive = ReadFile(tar);
    for (const auto& [uid, bytes] : stored) {
      const fs::path one = dir.path() / (uid + ".one");
      REQUIRE(server.Curl("wang.li", "GET", "/api/v1/studies/" + study + "/instances/" + uid, {"-o", one.string()})
                  .output == "\n200");
      CHECK(ReadFile(one) == bytes);
      CHECK(archive.find(bytes) != std::string::npos);
    }
    CHECK(archive.find(std::string(64, '\xEE')) == std::string::npos);  // nothing of the segment around them
  }

  SECTION("export writes each object as its own file, byte for byte") {
    const fs::path out = dir.path() / "export";
    CommandResult r = RunCommand({TELEREAD_SERVER_BIN, "--config", server.config_path().string(), "--storage",
                                  server.storage().string(), "export", study, "-o", out.string()});
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    const std::vector<fs::path> exported = ListFiles(out);
    CHECK(exported.size() == 3);
    for (const fs::path& f : exported) {
      auto s = ReadInstanceSummary(f);
      REQUIRE(s.ok());
      CHECK(ReadFile(f) == stored.at(s->sop_instance_uid));
    }
  }

  SECTION("a re-send is compared with the copy in the segment: the same is stored, a different one refused") {
    CHECK(StoreResponses(StoreFiles(server, "ZZ_PACS", {files->front().string()})) ==
          std::vector<std::string>{"Success"});
    std::string altered = ReadFile(files->front());
    const size_t at = altered.find("SEG1");
    REQUIRE(at != std::string::npos);
    altered.replace(at, 4, "SEGX");  // the same UIDs, other content
    const fs::path changed = dir.path() / "changed.dcm";
    WriteFile(changed, altered);
    CommandResult r = StoreFiles(server, "ZZ_PACS", {changed.string()});
    CHECK(StoreResponses(r) != std::vector<std::string>{"Success"});
    CHECK_THAT(server.Log(), Catch::Contains("different content"));
  }
}
