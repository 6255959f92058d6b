// Re-sends across the tiers: an object stored as a file, then re-sent when the centre keeps
// objects of its size in the index (the threshold raised between two runs), and the reverse.
// An identical re-send is Success and stores nothing twice (no object_data row beside the file,
// no file beside the bytes in the index); one with other content is refused 0x0111 and the first
// copy is kept untouched.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <regex>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "tests/support/scu.h"
#include "tests/support/server_fixture.h"
#include "tests/support/stored.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

struct Pair {
  DcmDataset original, altered;  // one SOP Instance UID, two contents
  std::string sop;
};

Pair MakePair(const fs::path& dir) {
  samples::SeriesSpec spec;
  spec.patient_name = "Resend^Tier";
  spec.patient_id = "RESEND-TIER";
  spec.rows = spec.columns = 32;  // ~3 kB: in the index at the default threshold
  auto files = samples::WriteSeries(spec, dir);
  REQUIRE(files.ok());
  DcmFileFormat ff;
  REQUIRE(ff.loadFile(files->front().c_str()).good());
  ff.loadAllDataIntoMemory();
  Pair p{DcmDataset(*ff.getDataset()), DcmDataset(*ff.getDataset()), ""};
  OFString sop;
  REQUIRE(p.original.findAndGetOFString(DCM_SOPInstanceUID, sop).good());
  p.sop = sop.c_str();
  REQUIRE(p.altered.putAndInsertString(DCM_ImageComments, "another content under the same UID").good());
  return p;
}

int Send(const TestServer& server, DcmDataset& ds, std::string* comment = nullptr) {
  TestScu scu(server.port(), "ZZ_PACS", {UID_CTImageStorage}, {UID_LittleEndianExplicitTransferSyntax});
  REQUIRE(scu.Connect() == "");
  const int status = scu.Store(ds, UID_CTImageStorage, "", "", comment);
  scu.Release();
  return status;
}

// What the storage holds, to compare before and after a re-send.
struct Holdings {
  std::set<std::string> rows;     // the index's object paths
  std::set<std::string> objects;  // files under objects/ and objects in the index
  std::string bytes;              // the one object's stored bytes
  ino_t inode = 0;                // its file's, for a file
  struct timespec mtime {};

  static Holdings Of(const fs::path& storage) {
    Holdings h;
    h.rows = IndexedPaths(storage);
    h.objects = FilesUnder(storage);
    REQUIRE(h.rows.size() == 1);
    h.bytes = StoredBytes(storage, *h.rows.begin());
    struct stat st {};
    if (::stat((storage / *h.rows.begin()).c_str(), &st) == 0) {
      h.inode = st.st_ino;
      h.mtime = st.st_mtim;
    }
    return h;
  }
  bool operator==(const Holdings& o) const {
    return rows == o.rows && objects == o.objects && bytes == o.bytes && inode == o.inode &&
           mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec;
  }
};

// Starts the stopped `server` again on its storage with centre.small_object_bytes changed.
void Restart(TestServer& server, uint64_t small_object_bytes) {
  const std::string config = ReadFile(server.config_path());
  const std::regex line("^small_object_bytes = .*$", std::regex::multiline);
  REQUIRE(std::regex_search(config, line));
  WriteFile(server.config_path(),
            std::regex_replace(config, line, "small_object_bytes = " + std::to_string(small_object_bytes)));
  server.Start();
}

}  // namespace

TEST_CASE("a file-tier object re-sent when it would be kept in the index is Success if identical and 0x0111 if not",
          "[tiers][ingest][resend]") {
  InitializeDicom();
  ScratchDir dir;
  Pair pair = MakePair(dir.path() / "in");
  ServerOptions files_only;
  files_only.small_object_bytes = 0;
  files_only.segment_mb = 0;
  TestServer server(dir.path() / "server", files_only);
  server.Start();
  REQUIRE(Send(server, pair.original) == 0x0000);
  REQUIRE(server.Stop() == 0);
  Restart(server, 131072);  // the default: this object's size is kept in the index
  const Holdings before = Holdings::Of(server.storage());
  REQUIRE(before.rows.begin()->rfind("objects/", 0) == 0);
  REQUIRE(before.inode != 0);
  REQUIRE(InIndexObjectCount(server.storage()) == 0);

  std::string comment;
  CHECK(Send(server, pair.original, &comment) == 0x0000);
  CHECK(comment.empty());
  CHECK(Holdings::Of(server.storage()) == before);  // one row, the same file, no bytes in the index
  CHECK(InIndexObjectCount(server.storage()) == 0);

  CHECK(Send(server, pair.altered, &comment) == 0x0111);
  CHECK_THAT(comment, Catch::Contains("different content"));
  CHECK(Holdings::Of(server.storage()) == before);
  CHECK(InIndexObjectCount(server.storage()) == 0);
  CHECK(fs::is_empty(server.storage() / "tmp"));
  CHECK(server.Stop() == 0);
}

TEST_CASE("an object kept in the index re-sent when it would be a file is Success if identical and 0x0111 if not",
          "[tiers][ingest][resend]") {
  InitializeDicom();
  ScratchDir dir;
  Pair pair = MakePair(dir.path() / "in");
  TestServer server(dir.path() / "server");
  server.Start();
  REQUIRE(Send(server, pair.original) == 0x0000);
  REQUIRE(server.Stop() == 0);
  Restart(server, 0);  // every object a file from now on
  const Holdings before = Holdings::Of(server.storage());
  REQUIRE(before.rows.begin()->rfind("index:", 0) == 0);
  REQUIRE(InIndexObjectCount(server.storage()) == 1);
  REQUIRE(CountFiles(server.storage() / "objects", true) == 0);

  std::string comment;
  CHECK(Send(server, pair.original, &comment) == 0x0000);
  CHECK(comment.empty());
  CHECK(Holdings::Of(server.storage()) == before);  // one row, its bytes in the index, no file
  CHECK(CountFiles(server.storage() / "objects", true) == 0);

  CHECK(Send(server, pair.altered, &comment) == 0x0111);
  CHECK_THAT(comment, Catch::Contains("different content"));
  CHECK(Holdings::Of(server.storage()) == before);
  CHECK(CountFiles(server.storage() / "objects", true) == 0);
  CHECK(fs::is_empty(server.storage() / "tmp"));

  // And after a restart (recovery finds no stray file to quarantine): still the one object.
  REQUIRE(server.Stop() == 0);
  server.Start();
  CHECK(Holdings::Of(server.storage()) == before);
  CHECK_THAT(server.Log(), !Catch::Contains("recovery: removed"));
  CHECK(server.Stop() == 0);
}
