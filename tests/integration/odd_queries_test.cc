// Odd query identifiers, sent as bytes exactly as written (a raw SCU: DCMTK would re-encode a
// DcmDataset) to the real server as ZZ_PACS: each is refused with a failure status, the
// association goes on, and the server lives on.
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcuid.h"

#include "common/dicom.h"
#include "tests/support/dicom_bytes.h"
#include "tests/support/process.h"
#include "tests/support/raw_scu.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

// Regression: DCMTK's C-FIND, C-MOVE and C-GET providers parsed the identifier in memory,
// recursively, before our code saw it; one nested 10,000 deep ended the server. Identifiers are
// now received as bytes (in memory up to 64 KiB, else into a file) and checked before DCMTK parses them.
TEST_CASE("query identifiers nested 10000 deep or lying about a length are refused and the server lives on",
          "[odd-files]") {
  InitializeDicom();
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  server.Start();
  const std::string plain = StudyKeys();
  const std::string nested = plain + NestedSequences(10000);
  const std::string lying = plain + ExplicitElement(0x0040, 0xA160, "UT", "ABCD", 0xFFFFFFF0u);
  RawStoreScu scu(server.port(), "ZZ_PACS",
                  {{UID_FINDStudyRootQueryRetrieveInformationModel, UID_LittleEndianExplicitTransferSyntax},
                   {UID_MOVEStudyRootQueryRetrieveInformationModel, UID_LittleEndianExplicitTransferSyntax}});
  REQUIRE(scu.Connect() == "");
  std::string comment;
  int pending = 0;
  CHECK(scu.Query(0, 0x0020, UID_FINDStudyRootQueryRetrieveInformationModel, nested, &comment, &pending) == 0xA900);
  CHECK_THAT(comment, Catch::Contains("nested deeper than 128"));
  REQUIRE(StillRunning(server));
  comment.clear();
  CHECK(scu.Query(0, 0x0020, UID_FINDStudyRootQueryRetrieveInformationModel, lying, &comment, &pending) == 0xA900);
  CHECK_THAT(comment, Catch::Contains("unreadable identifier") && Catch::Contains("is longer than"));
  comment.clear();
  // Small enough to be received in memory (the 10,000 deep one goes through a file): the same checks.
  CHECK(scu.Query(0, 0x0020, UID_FINDStudyRootQueryRetrieveInformationModel, plain + NestedSequences(200), &comment,
                  &pending) == 0xA900);
  CHECK_THAT(comment, Catch::Contains("nested deeper than 128"));
  comment.clear();
  CHECK(scu.Query(1, 0x0021, UID_MOVEStudyRootQueryRetrieveInformationModel, nested, &comment, &pending, "ZZ_PACS") ==
        0xA900);
  CHECK_THAT(comment, Catch::Contains("nested deeper than 128"));
  // The same association still answers a proper query.
  CHECK(scu.Query(0, 0x0020, UID_FINDStudyRootQueryRetrieveInformationModel, plain, &comment, &pending) == 0x0000);
  CHECK(pending == 0);
  REQUIRE(StillRunning(server));
  scu.Release();
  CHECK(Echo(server, "ZZ_PACS").exit_code == 0);
  CHECK(fs::is_empty(server.storage() / "tmp"));
  CHECK_THAT(server.Log(), Catch::Contains("C-FIND from ZZ_PACS (zhuozhou) refused"));
}

// A query's identifier is received in memory: a selective C-FIND creates no file (a temp file
// created, read and removed per query was a third of its time). A larger one still goes
// through the storage's tmp/, which is shown by taking tmp/ away.
TEST_CASE("a small query identifier needs no file, a large one goes through tmp/", "[odd-files][qr]") {
  InitializeDicom();
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  server.Start();
  const std::string plain = StudyKeys(false);
  // Well past 64 KiB: the spill to tmp/ fails before the last fragment. (Failing on the last one,
  // DCMTK waits to drain fragments that never come, until the DIMSE timeout.)
  const std::string large = plain + ExplicitElement(0x0040, 0xA160, "UT", std::string(200000, 'x'));
  RawStoreScu scu(server.port(), "ZZ_PACS",
                  {{UID_FINDStudyRootQueryRetrieveInformationModel, UID_LittleEndianExplicitTransferSyntax}});
  REQUIRE(scu.Connect() == "");
  const fs::path tmp = server.storage() / "tmp";
  REQUIRE(fs::remove_all(tmp) > 0);
  test::WriteFile(tmp, "not a directory");  // no temp file can be created from here on
  std::string comment;
  int pending = 0;
  CHECK(scu.Query(0, 0x0020, UID_FINDStudyRootQueryRetrieveInformationModel, plain, &comment, &pending) == 0x0000);
  CHECK(comment.empty());
  CHECK(scu.Query(0, 0x0020, UID_FINDStudyRootQueryRetrieveInformationModel, large, &comment, &pending) == 0xC000);
  CHECK_THAT(comment, Catch::Contains("cannot write the identifier"));
  scu.Release();
  fs::remove(tmp);
  fs::create_directory(tmp);
  CHECK(Echo(server, "ZZ_PACS").exit_code == 0);
}
