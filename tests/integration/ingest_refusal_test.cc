// Ingest refusals and re-sends over the wire, each judged by the DIMSE status the sender gets and
// by what the index and object store then hold: 0x0111 for a UID another member stored, 0x0124
// for a series of another study, and identical re-sends in other transfer syntaxes as Success.
#include <catch2/catch.hpp>

#include <regex>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "tests/support/scu.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

DcmDataset LoadDataset(const fs::path& file) {
  DcmFileFormat ff;
  REQUIRE(ff.loadFile(file.c_str()).good());
  ff.loadAllDataIntoMemory();
  return DcmDataset(*ff.getDataset());
}

std::vector<fs::path> Series(const fs::path& dir, const std::string& patient_id, int count) {
  samples::SeriesSpec spec;
  spec.patient_name = "Test^Patient";
  spec.patient_id = patient_id;
  spec.instances = count;
  spec.rows = spec.columns = 32;
  auto files = samples::WriteSeries(spec, dir);
  REQUIRE(files.ok());
  return files.value();
}

std::string Uid(DcmDataset& ds, const DcmTagKey& key) {
  OFString v;
  ds.findAndGetOFString(key, v);
  return v.c_str();
}

// The stored copy of `sop`, read back over the API as the admin.
std::string StoredBytes(const TestServer& server, const fs::path& dir, const std::string& study,
                        const std::string& sop) {
  const fs::path out = dir / ("stored-" + sop + ".dcm");
  CommandResult r =
      server.Curl("wang.li", "GET", "/api/v1/studies/" + study + "/instances/" + sop, {"-o", out.string()});
  REQUIRE(r.exit_code == 0);
  return ReadFile(out);
}

}  // namespace

TEST_CASE("a SOP Instance UID another member stored is refused with 0x0111 and the first copy kept",
          "[ingest][listener]") {
  InitializeDicom();
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  server.Start();
  const auto zz = Series(dir.path() / "zz", "ZZ-DUP", 1);
  REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {zz.front().string()})) == std::vector<std::string>{"Success"});
  DcmDataset first = LoadDataset(zz.front());
  const std::string sop = Uid(first, DCM_SOPInstanceUID), study = Uid(first, DCM_StudyInstanceUID);
  WaitForWorklist(server, 1);
  const std::string before = StoredBytes(server, dir.path(), study, sop);

  // Yixian's own study and series, but Zhuozhou's SOP Instance UID.
  DcmDataset clash = LoadDataset(Series(dir.path() / "yx", "YX-DUP", 1).front());
  clash.putAndInsertString(DCM_SOPInstanceUID, sop.c_str());
  TestScu yx(server.port(), "YX_PACS", {UID_CTImageStorage});
  REQUIRE(yx.Connect() == "");
  std::string comment;
  CHECK(yx.Store(clash, UID_CTImageStorage, "", "", &comment) == 0x0111);
  CHECK_THAT(comment, Catch::Contains("already stored"));
  yx.Release();

  CHECK(IndexedPaths(server.storage()).size() == 1);
  CHECK(StoredBytes(server, dir.path(), study, sop) == before);  // the first copy, unchanged
  CHECK(server.Stop() == 0);
}

TEST_CASE("an object whose series belongs to another study is refused with 0x0124", "[ingest][listener]") {
  InitializeDicom();
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  server.Start();
  const auto files = Series(dir.path() / "a", "SER-A", 1);
  REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {files.front().string()})) ==
          std::vector<std::string>{"Success"});
  DcmDataset a = LoadDataset(files.front());

  // The same member, a new study, but the first study's Series Instance UID.
  DcmDataset b = LoadDataset(Series(dir.path() / "b", "SER-B", 1).front());
  b.putAndInsertString(DCM_SeriesInstanceUID, Uid(a, DCM_SeriesInstanceUID).c_str());
  TestScu zz(server.port(), "ZZ_PACS", {UID_CTImageStorage});
  REQUIRE(zz.Connect() == "");
  std::string comment;
  CHECK(zz.Store(b, UID_CTImageStorage, "", "", &comment) == 0x0124);
  INFO("error comment: " << comment);
  CHECK_FALSE(comment.empty());
  zz.Release();
  CHECK(IndexedPaths(server.storage()).size() == 1);
  CHECK(IndexedPaths(server.storage()) == FilesUnder(server.storage()));
  CHECK(server.Stop() == 0);
}

TEST_CASE("an identical object re-sent in Implicit VR or Deflated is Success and stored once",
          "[ingest][listener][ts]") {
  InitializeDicom();
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  server.Start();
  const auto files = Series(dir.path() / "ct", "RESEND", 1);
  DcmDataset ds = LoadDataset(files.front());
  const std::string sop = Uid(ds, DCM_SOPInstanceUID), study = Uid(ds, DCM_StudyInstanceUID);
  {
    TestScu explicit_le(server.port(), "ZZ_PACS", {UID_CTImageStorage}, {UID_LittleEndianExplicitTransferSyntax});
    REQUIRE(explicit_le.Connect() == "");
    REQUIRE(explicit_le.Store(ds, UID_CTImageStorage) == 0x0000);
    explicit_le.Release();
  }
  WaitForWorklist(server, 1);
  const std::string first = StoredBytes(server, dir.path(), study, sop);
  for (const char* ts : {UID_LittleEndianImplicitTransferSyntax, UID_DeflatedExplicitVRLittleEndianTransferSyntax}) {
    INFO("re-sent in " << ts);
    TestScu again(server.port(), "ZZ_PACS", {UID_CTImageStorage}, {ts});
    REQUIRE(again.Connect() == "");
    REQUIRE(again.AcceptedTransferSyntax(UID_CTImageStorage) == ts);
    std::string comment;
    CHECK(again.Store(ds, UID_CTImageStorage, "", "", &comment) == 0x0000);
    CHECK(comment.empty());
    again.Release();
    CHECK(IndexedPaths(server.storage()).size() == 1);
    CHECK(StoredBytes(server, dir.path(), study, sop) == first);  // the first copy is kept as it was
  }
  CHECK(server.Stop() == 0);
}
