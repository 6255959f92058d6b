// Identifiers and small objects are parsed in place (DicomFile::Parse): over the network, each
// lie the unit tests (parse_attack_test.cc) refuse is refused at once and the server lives on.
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcuid.h"

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "tests/support/dicom_bytes.h"
#include "tests/support/raw_scu.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

// Appended after the (lower) tags of a data set, in explicit VR little endian.
std::string LyingFragment() {
  return std::string("\xE0\x7F\x10\x00OB\0\0\xFF\xFF\xFF\xFF", 12) + std::string("\xFE\xFF\x00\xE0\0\0\0\0", 8) +
         std::string("\xFE\xFF\x00\xE0", 4) + U32Le(0xFFFFFFF0u) + std::string(64, 'x');
}
std::string LyingImplicitInUn() {
  return std::string("\x29\x00\x10\x10UN\0\0\xFF\xFF\xFF\xFF", 12) + kItem + std::string("\x29\x00\x20\x10", 4) +
         U32Le(0x10000000u) + std::string(64, 'x');
}
std::string NestedUnknownVrPixelData(int levels) {
  std::string s = std::string("\xE0\x7F\x10\x00ZZ\0\0\xFF\xFF\xFF\xFF", 12);
  for (int i = 0; i < levels; ++i) s += kItem + std::string("\x09\x00\x10\x10\xFF\xFF\xFF\xFF", 8);
  s += kSeqEnd;
  for (int i = 0; i < levels; ++i) s += kItemEnd + kSeqEnd;
  return s;
}
std::string LegalPrivateUn() {
  return std::string(
             "\x29\x00\x10\x00LO\x04\x00"
             "ACME",
             12) +
         std::string("\x29\x00\x10\x10UN\0\0\xFF\xFF\xFF\xFF", 12) + kItem + std::string("\x29\x00\x11\x10", 4) +
         U32Le(8) + "ABCDEFGH" + kItemEnd + kSeqEnd;
}

}  // namespace

TEST_CASE("in-memory identifiers and small objects lying about lengths or nesting are refused at once",
          "[odd-files][parse][security]") {
  InitializeDicom();
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  server.Start();
  const std::string plain = StudyKeys();
  RawStoreScu scu(server.port(), "ZZ_PACS",
                  {{UID_FINDStudyRootQueryRetrieveInformationModel, UID_LittleEndianExplicitTransferSyntax},
                   {UID_CTImageStorage, UID_LittleEndianExplicitTransferSyntax}});
  REQUIRE(scu.Connect() == "");
  struct Case {
    std::string name, tail, says;
  };
  const std::vector<Case> cases = {
      {"a pixel fragment claiming 0xFFFFFFF0 bytes", LyingFragment(), "fragment runs past"},
      {"an implicit element of 0x10000000 bytes inside an undefined-length UN", LyingImplicitInUn(), "longer than"},
      {"pixel data of an unknown VR nesting 1,500 levels", NestedUnknownVrPixelData(1500), "nested deeper than 128"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    const std::string identifier = plain + c.tail;
    REQUIRE(identifier.size() < 64 * 1024);  // received in memory
    std::string comment;
    int pending = 0;
    CHECK(scu.Query(0, 0x0020, UID_FINDStudyRootQueryRetrieveInformationModel, identifier, &comment, &pending) ==
          0xA900);
    CHECK_THAT(comment, Catch::Contains("unreadable identifier") && Catch::Contains(c.says));
  }
  // A private sequence re-encoded as UN (implicit VR inside) is a legal identifier.
  std::string comment;
  int pending = 0;
  CHECK(scu.Query(0, 0x0020, UID_FINDStudyRootQueryRetrieveInformationModel, plain + LegalPrivateUn(), &comment,
                  &pending) == 0x0000);

  // A small C-STORE, parsed in place: the lie is refused, a legal private UN sequence stored.
  auto object = [](const std::string& sop, const std::string& tail) {
    DcmDataset ds;
    ds.putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
    ds.putAndInsertString(DCM_SOPInstanceUID, sop.c_str());
    ds.putAndInsertString(DCM_PatientName, "Lies^Told");
    ds.putAndInsertString(DCM_PatientID, "LIE1");
    ds.putAndInsertString(DCM_StudyInstanceUID, samples::NewUid().c_str());
    ds.putAndInsertString(DCM_SeriesInstanceUID, samples::NewUid().c_str());
    ds.putAndInsertString(DCM_Modality, "CT");
    return EncodeDataSet(ds, EXS_LittleEndianExplicit) + tail;
  };
  for (const Case& c : cases) {
    INFO("C-STORE: " << c.name);
    const std::string sop = samples::NewUid();
    CHECK(scu.Store(1, UID_CTImageStorage, sop, object(sop, c.tail), &comment) == 0xC000);
  }
  const std::string sop = samples::NewUid();
  CHECK(scu.Store(1, UID_CTImageStorage, sop, object(sop, LegalPrivateUn()), &comment) == 0x0000);
  scu.Release();
  CHECK(Echo(server, "ZZ_PACS").exit_code == 0);
  CHECK(server.running());
  CHECK(fs::is_empty(server.storage() / "tmp"));
}

// Regression: a spill that failed with the last fragment made DCMTK wait for fragments that never
// came, until the DIMSE timeout. The rest is now discarded and the refusal is immediate.
TEST_CASE("an identifier whose spill to tmp/ fails is refused at once, not at the DIMSE timeout", "[odd-files][qr]") {
  InitializeDicom();
  ScratchDir dir;
  ServerOptions options;
  options.dimse_timeout_seconds = 30;
  TestServer server(dir.path() / "server", options);
  server.Start();
  const std::string plain = StudyKeys(false);
  RawStoreScu scu(server.port(), "ZZ_PACS",
                  {{UID_FINDStudyRootQueryRetrieveInformationModel, UID_LittleEndianExplicitTransferSyntax}});
  REQUIRE(scu.Connect() == "");
  const fs::path tmp = server.storage() / "tmp";
  REQUIRE(fs::remove_all(tmp) > 0);
  test::WriteFile(tmp, "not a directory");  // no temp file can be created from here on
  // 64 to 80 KiB: past the in-memory limit, the spill fails with one of the last fragments.
  for (const size_t size : {66u * 1024, 70u * 1024, 78u * 1024}) {
    INFO(size << " bytes");
    const size_t value = size - plain.size() - 12;
    const std::string large = plain + std::string("\x40\x00\x60\xA1UT\0\0", 8) + U32Le(static_cast<uint32_t>(value)) +
                              std::string(value, 'x');
    std::string comment;
    int pending = 0;
    const auto start = std::chrono::steady_clock::now();
    CHECK(scu.Query(0, 0x0020, UID_FINDStudyRootQueryRetrieveInformationModel, large, &comment, &pending) == 0xC000);
    CHECK_THAT(comment, Catch::Contains("cannot write the identifier"));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  }
  scu.Release();
  fs::remove(tmp);
  fs::create_directory(tmp);
  CHECK(Echo(server, "ZZ_PACS").exit_code == 0);
}
