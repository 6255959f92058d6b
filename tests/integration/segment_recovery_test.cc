// Objects in segments that no row names are found again at start-up by their trailers
// (store/segment_trailer.h): after a restore whose index snapshot was taken before the segments
// were copied (operator guide 8.2/8.3), every object stored in between is indexed again, bit for
// bit; one whose bytes do not match its trailer, a refused copy and an identical re-send are not.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <sstream>

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "server/store/object_store.h"
#include "tests/support/server_fixture.h"
#include "tests/support/stored.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

// SOP Instance UID -> path, from the index.
std::map<std::string, std::string> IndexedPaths(const TestServer& server) {
  CommandResult r = RunCommand({"/usr/bin/sqlite3", (server.storage() / "index.sqlite").string(),
                                "SELECT sop_instance_uid || ' ' || path FROM instances"});
  REQUIRE(r.exit_code == 0);
  std::map<std::string, std::string> rows;
  std::istringstream lines(r.output);
  std::string uid, path;
  while (lines >> uid >> path) rows[uid] = path;
  return rows;
}

std::vector<fs::path> CtSeries(const fs::path& dir, const std::string& patient_id, int instances) {
  samples::SeriesSpec spec;
  spec.patient_name = "Segment^Recovery";
  spec.patient_id = patient_id;
  spec.instances = instances;
  spec.rows = spec.columns = 512;  // larger than the index tier: into a segment
  auto files = samples::WriteSeries(spec, dir);
  REQUIRE(files.ok());
  return files.value();
}

std::string Uid(const fs::path& file) {
  auto s = ReadInstanceSummary(file);
  REQUIRE(s.ok());
  return s->sop_instance_uid;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("a restored index gets back the segment objects stored after its snapshot, each proven whole",
          "[store][segment][recovery]") {
  InitializeDicom();
  ScratchDir dir;
  const std::vector<fs::path> before = CtSeries(dir.path() / "a", "SEGR1", 3);
  const std::vector<fs::path> after = CtSeries(dir.path() / "b", "SEGR2", 3);
  const std::vector<fs::path> last = CtSeries(dir.path() / "c", "SEGR3", 1);
  TestServer server(dir.path() / "server");
  server.Start();
  // A second server on the same storage stops before it reads, cuts or removes a segment.
  {
    CommandResult second = RunCommand({TELEREAD_SERVER_BIN, "--config", server.config_path().string(), "--storage",
                                       server.storage().string(), "--dicom-port", "0", "--http-port", "0"},
                                      std::chrono::seconds(30));
    CHECK(second.exit_code != 0);
    CHECK_THAT(second.output, Catch::Contains("another teleread-server uses the storage"));
  }
  REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {(dir.path() / "a").string()})) ==
          std::vector<std::string>(3, "Success"));
  // Backup step 1 (operator guide 8.2) while the server runs; the segments are copied later.
  const fs::path snapshot = dir.path() / "index-backup.sqlite";
  CommandResult backup =
      RunCommand({"/usr/bin/sqlite3", (server.storage() / "index.sqlite").string(), ".backup " + snapshot.string()});
  REQUIRE(backup.exit_code == 0);
  REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {(dir.path() / "b").string()})) ==
          std::vector<std::string>(3, "Success"));
  // An identical re-send, and a copy refused after it reached the segment (other content under a
  // stored UID): their trailers are voided, so no start-up offers them to Ingest.
  REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {after[0].string()})) == std::vector<std::string>{"Success"});
  std::string altered = ReadFile(before.front());
  const size_t at = altered.find("SEGR1");
  REQUIRE(at != std::string::npos);
  altered.replace(at, 5, "SEGRX");
  WriteFile(dir.path() / "changed.dcm", altered);
  CHECK(StoreResponses(StoreFiles(server, "ZZ_PACS", {(dir.path() / "changed.dcm").string()})) !=
        std::vector<std::string>{"Success"});
  REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {last.front().string()})) ==
          std::vector<std::string>{"Success"});
  const std::map<std::string, std::string> stored = IndexedPaths(server);
  REQUIRE(stored.size() == 7);
  for (const auto& [uid, path] : stored) REQUIRE(ObjectStore::InSegment(path));
  REQUIRE(server.Stop() == 0);
  auto verify = [&server] {
    return RunCommand({TELEREAD_SERVER_BIN, "--config", server.config_path().string(), "--storage",
                       server.storage().string(), "verify-segments"});
  };
  {
    CommandResult v = verify();
    CHECK(v.exit_code == 0);
    CHECK_THAT(v.output, Catch::Contains("7 object(s) in segments: 7 whole, 0 damaged, 0 without a trailer"));
  }

  // The third object stored after the snapshot is damaged in the copy (a byte of its pixels).
  const std::string damaged_path = stored.at(Uid(after[2]));
  {
    std::string segment;
    uint64_t offset = 0, length = 0;
    REQUIRE(ObjectStore::ParseInSegmentPath(damaged_path, &segment, &offset, &length));
    std::fstream f(server.storage() / segment, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset + length - 1000));
    const char c = static_cast<char>(f.get());
    f.seekp(static_cast<std::streamoff>(offset + length - 1000));
    f.put(static_cast<char>(~c));  // every bit flipped
  }
  {
    CommandResult v = verify();  // the scrub names it
    CHECK(v.exit_code == 1);
    CHECK_THAT(v.output, Catch::Contains("DAMAGED " + damaged_path));
    CHECK_THAT(v.output, Catch::Contains("7 object(s) in segments: 6 whole, 1 damaged, 0 without a trailer"));
  }
  // Restore (8.3): the snapshot replaces the index; the segments stay as copied.
  fs::copy_file(snapshot, server.storage() / "index.sqlite", fs::copy_options::overwrite_existing);
  fs::remove(server.storage() / "index.sqlite-wal");
  fs::remove(server.storage() / "index.sqlite-shm");
  REQUIRE(IndexedPaths(server).size() == 3);

  server.Start();
  const std::string log = server.Log();
  CHECK_THAT(log, Catch::Contains("recovery: indexed 3 object(s) found in segments past their last indexed one, "
                                  "left out 0"));
  CHECK_THAT(log, Catch::Contains("holds 1 object(s) past its last indexed one whose bytes do not match"));
  const std::map<std::string, std::string> recovered = IndexedPaths(server);
  CHECK(recovered.size() == 6);
  CHECK(recovered.count(Uid(after[2])) == 0);
  std::vector<fs::path> expected = before;
  expected.push_back(after[0]);
  expected.push_back(after[1]);
  expected.push_back(last.front());
  for (const fs::path& f : expected) {
    INFO(f.string());
    const std::string uid = Uid(f);
    REQUIRE(recovered.count(uid) == 1);
    CHECK(recovered.at(uid) == stored.at(uid));  // where it was, bit for bit
    CHECK(DataSetBytes(StoredBytes(server.storage(), recovered.at(uid))) == DataSetBytes(ReadFile(f)));
  }
  CHECK_THAT(server.Status().output, Catch::Contains("3 studies"));

  // Found once: the next start scans past the last indexed object and finds nothing more.
  REQUIRE(server.Stop() == 0);
  server.Start();
  CHECK(Count(server.Log(), "recovery: indexed") == 1);
  CHECK(Count(server.Log(), "whose bytes do not match") == 1);
  CHECK(IndexedPaths(server) == recovered);
}
