// Received objects larger than the in-index tier are appended to segment files (store/segments.h):
// each a range of a segment, from an aligned offset, bit for bit as received; no file of its own
// under objects/; one that outgrows its segment's room goes to a file; segments rotate; a crash
// loses nothing acknowledged and the next process writes new segments only.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <regex>
#include <set>

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "server/store/object_store.h"
#include "server/store/segment_trailer.h"
#include "tests/support/direct_probe.h"
#include "tests/support/server_fixture.h"
#include "tests/support/skip.h"
#include "tests/support/stored.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

// SOP Instance UID -> path, from the index.
std::map<std::string, std::string> Rows(const TestServer& server) {
  std::map<std::string, std::string> rows;
  CommandResult r = RunCommand({"/usr/bin/sqlite3", (server.storage() / "index.sqlite").string(),
                                "SELECT sop_instance_uid || ' ' || path FROM instances"});
  REQUIRE(r.exit_code == 0);
  std::istringstream lines(r.output);
  std::string uid, path;
  while (lines >> uid >> path) rows[uid] = path;
  return rows;
}

// Every file sent is stored, its data set bit for bit: at a segment range from an aligned offset,
// or (one that outgrew its segment) as a file. Returns how many are in segments.
size_t CheckStored(const TestServer& server, const std::vector<fs::path>& sent) {
  const std::map<std::string, std::string> rows = Rows(server);
  const std::regex locator(R"(segments/([^/@]+\.seg)@(\d+)\+(\d+))");
  size_t in_segments = 0;
  for (const fs::path& f : sent) {
    auto s = ReadInstanceSummary(f);
    REQUIRE(s.ok());
    INFO(f.string());
    REQUIRE(rows.count(s->sop_instance_uid));
    const std::string& path = rows.at(s->sop_instance_uid);
    INFO(path);
    const std::string stored = StoredBytes(server.storage(), path);
    CHECK(DataSetBytes(stored) == DataSetBytes(ReadFile(f)));
    std::smatch m;
    if (!std::regex_match(path, m, locator)) {
      CHECK(path.rfind("objects/", 0) == 0);
      continue;
    }
    ++in_segments;
    CHECK(std::stoull(m[2]) % 4096 == 0);
    CHECK(stored.size() == std::stoull(m[3]));
  }
  return in_segments;
}

std::vector<fs::path> Series(const fs::path& dir, const std::string& patient_id, int instances, int side) {
  samples::SeriesSpec spec;
  spec.patient_name = "Segment^Write";
  spec.patient_id = patient_id;
  spec.instances = instances;
  spec.rows = spec.columns = side;
  auto files = samples::WriteSeries(spec, dir);
  REQUIRE(files.ok());
  return files.value();
}

std::set<std::string> SegmentFiles(const TestServer& server) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(server.storage() / "segments", ec)) {
    if (e.path().extension() == ".seg") names.insert(e.path().filename());
  }
  return names;
}

}  // namespace

TEST_CASE("objects larger than the index tier are appended to segments, rotate, and outgrow them into files",
          "[store][segment][ingest]") {
  // Segments that grow as objects are appended, or pre-written with zeros (then an object that
  // outgrows one is copied before the segment is cut where it began).
  const bool prewrite = GENERATE(false, true);
  INFO("segment_prewrite " << prewrite);
  InitializeDicom();
  ScratchDir dir;
  // 512 x 512 x 16 bit: 129 blocks of 4 KiB each, three to a 2 MiB segment.
  const std::vector<fs::path> ct = Series(dir.path() / "ct", "SEGW1", 10, 512);
  const std::vector<fs::path> large = Series(dir.path() / "large", "SEGW2", 1, 1200);  // ~2.9 MB
  ServerOptions options;
  options.segment_mb = 2;
  if (prewrite) options.edits.push_back({"^# segment_prewrite = false$", "segment_prewrite = true"});
  TestServer server(dir.path() / "server", options);
  server.Start();

  {
    CommandResult pushed = StoreFiles(server, "ZZ_PACS", {(dir.path() / "ct").string()});
    INFO(pushed.output);
    REQUIRE(StoreResponses(pushed) == std::vector<std::string>(10, "Success"));
  }
  // Native objects go to their segment with O_DIRECT and their last block padded: none of them in
  // the page cache (the parse read the head from memory, and nothing past it).
  if (DirectWritesSkipCache(dir.path())) {
    for (const std::string& name : SegmentFiles(server)) {
      INFO(name);
      CHECK(Residency(server.storage() / "segments" / name).first == 0);
    }
  }
  // One association: three in the first segment; the fourth outgrows it and is copied to a file
  // of its own, the segment retired; three in the next; the eighth a file; two in the third.
  CHECK(CheckStored(server, ct) == 8);
  CHECK(ListFiles(server.storage() / "objects").size() == 2);
  CHECK(ListFiles(server.storage() / "tmp").empty());
  CHECK_THAT(server.Status().output,
             Catch::Contains("objects: 0 kept in the index, 8 in segment files, 2 files of their own"));
  CHECK(SegmentFiles(server).size() >= 3);  // and one made ready for the next taker

  SECTION("an object larger than a segment is a file of its own; the next one goes to a segment again") {
    REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {large.front().string()})) ==
            std::vector<std::string>{"Success"});
    auto s = ReadInstanceSummary(large.front());
    REQUIRE(s.ok());
    const std::string path = Rows(server).at(s->sop_instance_uid);
    CHECK(path.rfind("objects/", 0) == 0);
    CHECK(DataSetBytes(StoredBytes(server.storage(), path)) == DataSetBytes(ReadFile(large.front())));
    const std::vector<fs::path> more = Series(dir.path() / "more", "SEGW3", 1, 512);
    REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {more.front().string()})) ==
            std::vector<std::string>{"Success"});
    CHECK(CheckStored(server, more) == 1);
  }

  SECTION("objects that fill a segment to its last byte: the next one starts the next segment") {
    // 510 x 510 x 16 bit: 128 blocks each, four to 2 MiB exactly. The first goes into the third
    // segment (two 129-block objects in it), the second outgrows it (a file); the next four fill
    // a segment to its last byte, and the two after them go into a new one.
    const std::vector<fs::path> exact = Series(dir.path() / "exact", "SEGW6", 8, 510);
    REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {(dir.path() / "exact").string()})) ==
            std::vector<std::string>(8, "Success"));
    CHECK(CheckStored(server, exact) == 7);
    CHECK(ListFiles(server.storage() / "objects").size() == 3);
  }

  SECTION("a re-send is compared where each copy lies: the same is stored once, another content refused") {
    const std::map<std::string, std::string> before = Rows(server);
    REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {ct.front().string()})) ==
            std::vector<std::string>{"Success"});
    CHECK(Rows(server) == before);  // the first copy's row, unchanged
    std::string altered = ReadFile(ct.front());
    const size_t at = altered.find("SEGW1");
    REQUIRE(at != std::string::npos);
    altered.replace(at, 5, "SEGWX");
    const fs::path changed = dir.path() / "changed.dcm";
    WriteFile(changed, altered);
    CHECK(StoreResponses(StoreFiles(server, "ZZ_PACS", {changed.string()})) != std::vector<std::string>{"Success"});
    CHECK_THAT(server.Log(), Catch::Contains("different content"));
    CHECK(Rows(server) == before);
    CHECK(CheckStored(server, ct) == 8);
  }

  SECTION("C-GET sends each object from its segment, bit for bit") {
    auto s = ReadInstanceSummary(ct.front());
    REQUIRE(s.ok());
    const fs::path got = dir.path() / "got";
    CommandResult r = GetStudy(server, "ZZ_PACS", s->study_instance_uid, got);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    std::map<std::string, std::string> sent;
    for (const fs::path& f : ct) {
      auto one = ReadInstanceSummary(f);
      REQUIRE(one.ok());
      sent[one->sop_instance_uid] = DataSetBytes(ReadFile(f));
    }
    const std::vector<fs::path> received = ListFiles(got);
    CHECK(received.size() == ct.size());
    for (const fs::path& f : received) {
      auto one = ReadInstanceSummary(f);
      REQUIRE(one.ok());
      CHECK(DataSetBytes(ReadFile(f)) == sent.at(one->sop_instance_uid));
    }
  }

  SECTION("after a crash the next process writes new segments only; every acknowledged object is intact") {
    struct statfs storage_fs {};
    REQUIRE(::statfs(server.storage().c_str(), &storage_fs) == 0);
    const bool allocated = storage_fs.f_type == 0xEF53 || storage_fs.f_type == 0x58465342;  // ext4, XFS
    std::map<std::string, uintmax_t> sizes;
    for (const std::string& name : SegmentFiles(server))
      sizes[name] = fs::file_size(server.storage() / "segments" / name);
    REQUIRE(server.Stop(9) == -1);
    server.Start();
    const std::vector<fs::path> after = Series(dir.path() / "after", "SEGW4", 3, 512);
    REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {(dir.path() / "after").string()})) ==
            std::vector<std::string>(3, "Success"));
    CHECK(CheckStored(server, ct) == 8);
    CHECK(CheckStored(server, after) == 3);
    const std::map<std::string, std::string> rows = Rows(server);
    std::map<std::string, uint64_t> slot_end;  // segment name -> where its last named object's slot ends
    for (const auto& [uid, path] : rows) {
      std::string segment;
      uint64_t offset = 0, length = 0;
      if (!ObjectStore::ParseInSegmentPath(path, &segment, &offset, &length)) continue;
      uint64_t& end = slot_end[segment.substr(9)];
      end = std::max(end, SegmentSlotEnd(offset, length, 4096));
    }
    for (const auto& [name, size] : sizes) {
      INFO(name);
      // Allocated whole while written (pre-written, or fallocate'd on ext4 and XFS).
      const bool whole = prewrite || allocated;
      if (!fs::exists(server.storage() / "segments" / name)) {
        // Made ready and never written (empty, or all zeros when allocated): removed at the start.
        CHECK((size == 0 || whole));
        CHECK(slot_end.count(name) == 0);
      } else if (whole) {
        // The zeros past its last object cut off at the start, its objects' bytes kept.
        CHECK(fs::file_size(server.storage() / "segments" / name) == slot_end.at(name));
      } else {
        CHECK(fs::file_size(server.storage() / "segments" / name) == size);  // never written again
      }
    }
    for (const fs::path& f : after) {
      auto s = ReadInstanceSummary(f);
      REQUIRE(s.ok());
      const std::string& path = rows.at(s->sop_instance_uid);
      CHECK(sizes.count(path.substr(9, path.find('@') - 9)) == 0);
    }
  }
}

TEST_CASE("with segment_mb = 0 objects are files, and a re-send restores one that was lost into a segment",
          "[store][segment][ingest][resend]") {
  InitializeDicom();
  ScratchDir dir;
  const std::vector<fs::path> ct = Series(dir.path() / "ct", "SEGW7", 2, 512);
  ServerOptions options;
  options.segment_mb = 0;
  TestServer server(dir.path() / "server", options);
  server.Start();
  REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {(dir.path() / "ct").string()})) ==
          std::vector<std::string>(2, "Success"));
  // With segment_mb = 0 larger objects are files of their own.
  for (const auto& [uid, path] : Rows(server)) CHECK(path.rfind("objects/", 0) == 0);
  CHECK(ListFiles(server.storage() / "objects").size() == 2);
  CHECK(SegmentFiles(server).empty());
  REQUIRE(server.Stop() == 0);
  auto lost = ReadInstanceSummary(ct[0]);
  REQUIRE(lost.ok());
  const std::string file_path = Rows(server).at(lost->sop_instance_uid);
  REQUIRE(file_path.rfind("objects/", 0) == 0);
  REQUIRE(RemoveStoredObject(server.storage(), file_path));
  // Segments from now on.
  const std::string config = ReadFile(server.config_path());
  WriteFile(server.config_path(), std::regex_replace(config, std::regex("\nsegment_mb = 0\n"), "\nsegment_mb = 2\n"));
  server.Start();

  REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {ct[0].string()})) == std::vector<std::string>{"Success"});
  const std::string restored = Rows(server).at(lost->sop_instance_uid);
  CHECK(restored.rfind("segments/", 0) == 0);
  CHECK(DataSetBytes(StoredBytes(server.storage(), restored)) == DataSetBytes(ReadFile(ct[0])));
  CHECK_THAT(server.Log(), Catch::Contains("restored missing object " + file_path));
  // The other one, still there, is compared and kept where it is.
  auto kept = ReadInstanceSummary(ct[1]);
  REQUIRE(kept.ok());
  const std::string kept_path = Rows(server).at(kept->sop_instance_uid);
  REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {ct[1].string()})) == std::vector<std::string>{"Success"});
  CHECK(Rows(server).at(kept->sop_instance_uid) == kept_path);
  CHECK(IndexedPaths(server.storage()) == FilesUnder(server.storage()));
}
