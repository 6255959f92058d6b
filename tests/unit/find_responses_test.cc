// The C-FIND response path of qr_scp: identifiers encoded without a DcmDataset must be the bytes
// DCMTK writes for the same data set (in both Little Endian syntaxes), and a query's audit entry,
// written beside the query, must be durable when waited for or make the query refuse.
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdatset.h"
#include "dcmtk/dcmdata/dcdeftag.h"

#include "server/dicom/concurrent_audit.h"
#include "server/dicom/find_responses.h"
#include "server/store/index.h"
#include "server/store/sqlite.h"
#include "tests/support/process.h"

using namespace teleread;

namespace {

uint32_t Tag(const DcmTagKey& k) { return (uint32_t{k.getGroup()} << 16) | k.getElement(); }

int64_t Count(const std::filesystem::path& db_path, const std::string& sql) {
  auto db = Database::Open(db_path, true);
  REQUIRE(db.ok());
  Statement q(db.value()->handle(), sql);
  Result<bool> row = q.Step();
  REQUIRE(row.ok());
  REQUIRE(row.value());
  return q.Int(0);
}

}  // namespace

TEST_CASE("a match's identifier is encoded as DCMTK encodes the same data set", "[qr][find]") {
  // Odd lengths (padded with NUL for UI, a space otherwise), an empty value, a multi-valued one,
  // a key the index does not know and the two the server fills itself, in request order.
  const std::vector<uint32_t> keys = {Tag(DCM_StudyInstanceUID),
                                      Tag(DCM_PatientName),
                                      Tag(DCM_StudyDate),
                                      Tag(DCM_AccessionNumber),
                                      Tag(DCM_ModalitiesInStudy),
                                      Tag(DCM_StudyDescription),
                                      Tag(DCM_RetrieveAETitle),
                                      Tag(DCM_ReferringPhysicianName),
                                      Tag(DCM_InstanceAvailability),
                                      Tag(DCM_NumberOfStudyRelatedInstances)};
  const FindRow row = {{Tag(DCM_PatientName), "M\xC3\xBCller^Hans"},  // Müller, UTF-8 as the index keeps it
                       {Tag(DCM_StudyDate), "20200101"},
                       {Tag(DCM_AccessionNumber), ""},
                       {Tag(DCM_StudyDescription), "CT head"},
                       {Tag(DCM_ModalitiesInStudy), "CT\\MR"},
                       {Tag(DCM_StudyInstanceUID), "2.25.1234"},
                       {Tag(DCM_NumberOfStudyRelatedInstances), "10"}};
  for (const std::string charset : {"ISO_IR 192", "ISO_IR 100"}) {
    for (const bool explicit_vr : {true, false}) {
      INFO(charset << (explicit_vr ? " explicit" : " implicit"));
      DcmDataset ds;
      ds.putAndInsertString(DCM_SpecificCharacterSet, charset.c_str());
      ds.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
      ds.putAndInsertString(DCM_StudyInstanceUID, "2.25.1234");
      ds.putAndInsertString(DCM_PatientName, charset == "ISO_IR 100" ? "M\xFCller^Hans" : "M\xC3\xBCller^Hans");
      ds.putAndInsertString(DCM_StudyDate, "20200101");
      ds.putAndInsertString(DCM_AccessionNumber, "");
      ds.putAndInsertString(DCM_ModalitiesInStudy, "CT\\MR");
      ds.putAndInsertString(DCM_StudyDescription, "CT head");
      ds.putAndInsertString(DCM_RetrieveAETitle, "LX_READ");
      ds.putAndInsertString(DCM_ReferringPhysicianName, "");
      ds.putAndInsertString(DCM_InstanceAvailability, "ONLINE");
      ds.putAndInsertString(DCM_NumberOfStudyRelatedInstances, "10");
      const int xfer = explicit_vr ? EXS_LittleEndianExplicit : EXS_LittleEndianImplicit;
      std::string expected;
      REQUIRE(EncodeIdentifier(ds, xfer, &expected));

      auto encoder = IdentifierEncoder::Create(keys, explicit_vr, "STUDY", "LX_READ");
      REQUIRE(encoder != nullptr);
      std::string got = "kept";  // appended to
      REQUIRE(encoder->Encode(row, charset, &got));
      CHECK(got == "kept" + expected);
    }
  }
}

TEST_CASE("an identifier the encoder cannot write is left to DCMTK", "[qr][find]") {
  // A sequence as return key: the DcmDataset path.
  CHECK(IdentifierEncoder::Create({Tag(DCM_PatientName), Tag(DCM_ReferencedStudySequence)}, true, "STUDY", "X") ==
        nullptr);
  // A name Latin-1 cannot hold: nothing appended, so that the caller answers in UTF-8.
  auto encoder = IdentifierEncoder::Create({Tag(DCM_PatientName)}, true, "STUDY", "X");
  REQUIRE(encoder != nullptr);
  std::string out;
  CHECK_FALSE(encoder->Encode({{Tag(DCM_PatientName), "\xE5\xBC\xA0^\xE4\xBC\x9F"}}, "ISO_IR 100", &out));
  CHECK(out.empty());
  CHECK(encoder->Encode({{Tag(DCM_PatientName), "\xE5\xBC\xA0^\xE4\xBC\x9F"}}, "ISO_IR 192", &out));
  CHECK(out.find("\xE5\xBC\xA0^\xE4\xBC\x9F") != std::string::npos);
}

TEST_CASE("a C-FIND's audit entry written beside the query is durable when waited for, or refuses",
          "[qr][find][audit]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "index.sqlite";
  auto index = Index::Open(path);
  REQUIRE(index.ok());
  AuditLog log(*index.value(), [] { return int64_t{1000}; });
  ConcurrentAudit audit(log);
  CHECK_FALSE(audit.Wait().ok());  // nothing started: no entry to vouch for
  for (int i = 0; i < 50; ++i) {
    audit.Start({"zhuozhou", "C-FIND", "2.25." + std::to_string(i), "STUDY"});
    REQUIRE(audit.Wait().ok());
    REQUIRE(Count(path, "SELECT COUNT(*) FROM audit_log WHERE action = 'C-FIND'") == i + 1);
  }
  // An entry the store refuses is reported to the query, which must not answer.
  {
    auto db = Database::Open(path, false);
    REQUIRE(db.ok());
    REQUIRE(db.value()
                ->Exec("CREATE TRIGGER refuse BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'refused'); END;")
                .ok());
  }
  audit.Start({"zhuozhou", "C-FIND", "2.25.999", "STUDY"});
  CHECK_FALSE(audit.Wait().ok());
  CHECK(Count(path, "SELECT COUNT(*) FROM audit_log WHERE action = 'C-FIND'") == 50);
}

TEST_CASE("a response is one PDU when it fits, and fragments within the peer's maximum when not", "[qr][find]") {
  struct Pdv {
    size_t pdu;
    int context, control;
    std::string bytes;
  };
  auto parse = [](const std::string& wire, size_t max_body) {
    std::vector<Pdv> pdvs;
    size_t at = 0, pdus = 0;
    auto u32 = [&](size_t p) {
      return uint32_t(uint8_t(wire[p])) << 24 | uint32_t(uint8_t(wire[p + 1])) << 16 |
             uint32_t(uint8_t(wire[p + 2])) << 8 | uint8_t(wire[p + 3]);
    };
    while (at < wire.size()) {
      REQUIRE(wire[at] == 0x04);  // P-DATA-TF
      const size_t body = u32(at + 2), end = at + 6 + body;
      REQUIRE(body <= max_body);
      REQUIRE(end <= wire.size());
      for (size_t p = at + 6; p < end;) {
        const size_t len = u32(p);
        REQUIRE(len >= 2);
        pdvs.push_back({pdus, uint8_t(wire[p + 4]), uint8_t(wire[p + 5]), wire.substr(p + 6, len - 2)});
        p += 4 + len;
        REQUIRE(p <= end);
      }
      at = end;
      ++pdus;
    }
    return pdvs;
  };
  const std::string command(90, 'c');
  SECTION("fits") {
    const std::string ids(300, 'i');
    const std::string_view view = ids;
    std::string wire;
    AppendMessagePdus(&wire, 16384, 3, command, &view);
    std::vector<Pdv> pdvs = parse(wire, 16384);
    REQUIRE(pdvs.size() == 2);
    CHECK(pdvs[0].pdu == 0);
    CHECK(pdvs[1].pdu == 0);
    CHECK(pdvs[0].context == 3);
    CHECK(pdvs[0].control == 0x03);  // command, last
    CHECK(pdvs[1].control == 0x02);  // data set, last
    CHECK(pdvs[0].bytes == command);
    CHECK(pdvs[1].bytes == ids);
  }
  SECTION("too long for one PDU") {
    std::string ids;
    for (int i = 0; i < 10000; ++i) ids += static_cast<char>('a' + i % 26);
    const std::string_view view = ids;
    std::string wire = "before";
    AppendMessagePdus(&wire, 4096, 1, command, &view);
    REQUIRE(wire.substr(0, 6) == "before");
    std::vector<Pdv> pdvs = parse(wire.substr(6), 4096);
    REQUIRE(pdvs.size() >= 4);
    std::string data;
    for (size_t i = 1; i < pdvs.size(); ++i) {
      CHECK((pdvs[i].control & 0x01) == 0);
      CHECK((pdvs[i].control & 0x02) == (i + 1 == pdvs.size() ? 0x02 : 0));
      data += pdvs[i].bytes;
    }
    CHECK(pdvs[0].bytes == command);
    CHECK(data == ids);
  }
  SECTION("no identifier") {
    std::string wire;
    AppendMessagePdus(&wire, 4096, 1, command, nullptr);
    std::vector<Pdv> pdvs = parse(wire, 4096);
    REQUIRE(pdvs.size() == 1);
    CHECK(pdvs[0].control == 0x03);
  }
}
