// The C-FIND response path of qr_scp: identifiers encoded without a DcmDataset must be the bytes
// DCMTK writes for the same data set (in both Little Endian syntaxes), and a query's audit entry,
// written beside the query, must be durable when waited for or make the query refuse.
#include <catch2/catch.hpp>

#include <future>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdatset.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/dimse.h"

#include "server/dicom/dimse_status.h"
#include "server/dicom/find_responses.h"
#include "server/store/audit_log.h"
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

// A command set as DCMTK writes one: Implicit VR Little Endian with the group length.
std::string AsCommand(DcmDataset& cmd) {
  REQUIRE(cmd.computeGroupLengthAndPadding(EGL_withGL, EPD_noChange, EXS_LittleEndianImplicit).good());
  const Uint32 length = cmd.calcElementLength(EXS_LittleEndianImplicit, EET_ExplicitLength);
  std::string expected(length, '\0');
  DcmOutputBufferStream stream(expected.data(), length);
  cmd.transferInit();
  REQUIRE(cmd.write(stream, EXS_LittleEndianImplicit, EET_ExplicitLength, nullptr, EGL_withGL).good());
  cmd.transferEnd();
  void* data = nullptr;
  offile_off_t written = 0;
  stream.flushBuffer(data, written);
  expected.resize(static_cast<size_t>(written));
  REQUIRE(expected.size() > 8);
  return expected;
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

TEST_CASE("a C-STORE-RQ command set is the bytes DCMTK writes for it", "[qr][move]") {
  for (const std::string originator : {"", "ZZ_PACS", "LS_PACS1"}) {  // odd AE title: a space pad
    INFO("move originator '" << originator << "'");
    DcmDataset cmd;
    REQUIRE(cmd.putAndInsertString(DCM_AffectedSOPClassUID, UID_CTImageStorage).good());
    REQUIRE(cmd.putAndInsertUint16(DCM_CommandField, DIMSE_C_STORE_RQ).good());
    REQUIRE(cmd.putAndInsertUint16(DCM_MessageID, 0x4321).good());
    REQUIRE(cmd.putAndInsertUint16(DCM_Priority, DIMSE_PRIORITY_MEDIUM).good());
    REQUIRE(cmd.putAndInsertUint16(DCM_CommandDataSetType, DIMSE_DATASET_PRESENT).good());
    REQUIRE(cmd.putAndInsertString(DCM_AffectedSOPInstanceUID, "1.2.3.44").good());
    if (!originator.empty()) {
      REQUIRE(cmd.putAndInsertString(DCM_MoveOriginatorApplicationEntityTitle, originator.c_str()).good());
      REQUIRE(cmd.putAndInsertUint16(DCM_MoveOriginatorMessageID, 7).good());
    }
    CHECK(StoreRequestCommand(UID_CTImageStorage, 0x4321, "1.2.3.44", originator, 7) == AsCommand(cmd));
  }
}

TEST_CASE("a C-STORE-RSP command set is the bytes DCMTK writes for it", "[ingest]") {
  // The elements DCMTK's DIMSE_sendStoreResponse puts in the command (dimcmd.cc), with the status
  // detail's elements moved in as DIMSE_sendMessage does, written as it writes a command.
  for (const std::string instance : {"1.2.3.44", "1.2.3.4"}) {  // odd: UI's NUL pad
    for (const std::string& comment :
         {std::string(), std::string("storage full"), std::string("odd"), std::string(64, 'y'), std::string(70, 'x')}) {
      for (const uint16_t status : {uint16_t{0x0000}, uint16_t{0xA700}, uint16_t{0x0111}}) {
        INFO("instance " << instance << " comment '" << comment << "' status " << status);
        DcmDataset cmd;
        REQUIRE(cmd.putAndInsertString(DCM_AffectedSOPClassUID, UID_CTImageStorage).good());
        REQUIRE(cmd.putAndInsertUint16(DCM_CommandField, DIMSE_C_STORE_RSP).good());
        REQUIRE(cmd.putAndInsertUint16(DCM_MessageIDBeingRespondedTo, 0x4321).good());
        REQUIRE(cmd.putAndInsertUint16(DCM_CommandDataSetType, DIMSE_DATASET_NULL).good());
        REQUIRE(cmd.putAndInsertUint16(DCM_Status, status).good());
        REQUIRE(cmd.putAndInsertString(DCM_AffectedSOPInstanceUID, instance.c_str()).good());
        if (!comment.empty()) {
          DcmDataset detail;
          dimse::SetErrorComment(detail, comment);
          while (detail.card() > 0) REQUIRE(cmd.insert(detail.remove(0UL)).good());
        }
        CHECK(StoreResponseCommand(UID_CTImageStorage, 0x4321, instance, status, comment) == AsCommand(cmd));
      }
    }
  }
}

TEST_CASE("a data PDV is even and fits the peer's PDU", "[qr][move]") {
  CHECK(DataPduValueMax(4096, 256 * 1024) == 4090);
  CHECK(DataPduValueMax(4097, 256 * 1024) == 4090);  // 4091 would be odd
  CHECK(DataPduValueMax(16, 256 * 1024) == 10);
  CHECK(DataPduValueMax(size_t{1} << 20, 256 * 1024) == 256 * 1024);
  CHECK(DataPduValueMax(size_t{1} << 20, 101) == 100);
  char header[12];
  DataPduHeader(header, 4090, 5, true);
  CHECK(std::string(header, 12) == std::string("\x04\x00\x00\x00\x10\x00\x00\x00\x0f\xfc\x05\x02", 12));
  DataPduHeader(header, 10, 3, false);
  CHECK(std::string(header, 12) == std::string("\x04\x00\x00\x00\x00\x10\x00\x00\x00\x0c\x03\x00", 12));
}

TEST_CASE("a C-FIND-RSP command set is the bytes DCMTK writes for it", "[qr][find]") {
  // The elements DCMTK's DIMSE_sendFindResponse puts in the command (dimcmd.cc), written as it
  // writes a command: Implicit VR Little Endian with the group length.
  T_DIMSE_C_FindRQ req{};
  OFStandard::strlcpy(req.AffectedSOPClassUID, UID_FINDStudyRootQueryRetrieveInformationModel,
                      sizeof req.AffectedSOPClassUID);  // odd length: UI's NUL pad
  req.MessageID = 0x1234;
  const std::string head = FindResponseCommandHead(req);
  for (const bool with_identifier : {true, false}) {
    for (const uint16_t status : {uint16_t{0xFF00}, uint16_t{0x0000}, uint16_t{0xFE00}}) {
      INFO("status " << status << (with_identifier ? " with" : " without") << " identifier");
      DcmDataset cmd;
      REQUIRE(cmd.putAndInsertString(DCM_AffectedSOPClassUID, req.AffectedSOPClassUID).good());
      REQUIRE(cmd.putAndInsertUint16(DCM_CommandField, DIMSE_C_FIND_RSP).good());
      REQUIRE(cmd.putAndInsertUint16(DCM_MessageIDBeingRespondedTo, req.MessageID).good());
      REQUIRE(
          cmd.putAndInsertUint16(DCM_CommandDataSetType, with_identifier ? DIMSE_DATASET_PRESENT : DIMSE_DATASET_NULL)
              .good());
      REQUIRE(cmd.putAndInsertUint16(DCM_Status, status).good());
      CHECK(FindResponseCommand(head, status, with_identifier) == AsCommand(cmd));
    }
  }
}

TEST_CASE("explicit VR: UT, UC and UR keys have 4-byte lengths as DCMTK writes them", "[qr][find]") {
  const std::vector<uint32_t> keys = {Tag(DCM_StudyDescription), Tag(DCM_RetrieveURL), Tag(DCM_TextValue),
                                      Tag(DCM_LongCodeValue)};
  const std::string long_text(70001, 't');  // odd: padded
  const FindRow row = {{Tag(DCM_StudyDescription), "CT head"},
                       {Tag(DCM_RetrieveURL), "https://pacs.example/wado/1"},
                       {Tag(DCM_TextValue), long_text},
                       {Tag(DCM_LongCodeValue), "UC-VALUE-1"}};
  for (const bool explicit_vr : {true, false}) {
    INFO((explicit_vr ? "explicit" : "implicit"));
    DcmDataset ds;
    ds.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
    ds.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
    ds.putAndInsertString(DCM_StudyDescription, "CT head");
    ds.putAndInsertString(DCM_RetrieveURL, "https://pacs.example/wado/1");
    ds.putAndInsertString(DCM_TextValue, long_text.c_str());
    ds.putAndInsertString(DCM_LongCodeValue, "UC-VALUE-1");
    std::string expected;
    REQUIRE(EncodeIdentifier(ds, explicit_vr ? EXS_LittleEndianExplicit : EXS_LittleEndianImplicit, &expected));
    auto encoder = IdentifierEncoder::Create(keys, explicit_vr, "STUDY", "X");
    REQUIRE(encoder != nullptr);
    std::string got;
    REQUIRE(encoder->Encode(row, "ISO_IR 192", &got));
    CHECK(got == expected);
  }
}

TEST_CASE("a value too long for its VR's 2-byte length is left to the DcmDataset path", "[qr][find]") {
  const std::string long_lo(70000, 'L');
  const FindRow row = {{Tag(DCM_StudyDescription), long_lo}, {Tag(DCM_AccessionNumber), "A1"}};
  auto encoder = IdentifierEncoder::Create({Tag(DCM_StudyDescription), Tag(DCM_AccessionNumber)}, true, "STUDY", "X");
  REQUIRE(encoder != nullptr);
  std::string out = "kept";
  CHECK_FALSE(encoder->Encode(row, "ISO_IR 192", &out));
  CHECK(out == "kept");  // nothing half-written
  // Implicit VR has a 4-byte length for every element: written here, as DCMTK writes it.
  auto implicit = IdentifierEncoder::Create({Tag(DCM_StudyDescription), Tag(DCM_AccessionNumber)}, false, "STUDY", "X");
  REQUIRE(implicit != nullptr);
  DcmDataset ds;
  ds.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
  ds.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
  ds.putAndInsertString(DCM_StudyDescription, long_lo.c_str());
  ds.putAndInsertString(DCM_AccessionNumber, "A1");
  std::string expected;
  REQUIRE(EncodeIdentifier(ds, EXS_LittleEndianImplicit, &expected));
  std::string got;
  REQUIRE(implicit->Encode(row, "ISO_IR 192", &got));
  CHECK(got == expected);
}

TEST_CASE("the PDU limit is the peer's maximum as given", "[qr][find]") {
  CHECK(PduBodyLimit(1024) == 1024);
  CHECK(PduBodyLimit(4096) == 4096);
  CHECK(PduBodyLimit(16) == 16);
  CHECK(PduBodyLimit(0) >= 64 * 1024);  // no limit: ours, larger than a batch's response
  CHECK(PduBodyLimit(15) == 0);         // no room for a PDV: DCMTK answers
  CHECK(PduBodyLimit(8) == 0);
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
  for (int i = 0; i < 50; ++i) {
    std::future<Status> entry = log.AppendAsync({"zhuozhou", "C-FIND", "2.25." + std::to_string(i), "STUDY"});
    REQUIRE(entry.get().ok());
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
  CHECK_FALSE(log.AppendAsync({"zhuozhou", "C-FIND", "2.25.999", "STUDY"}).get().ok());
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
  SECTION("a peer maximum of 1024") {
    const std::string ids(5000, 'i');
    const std::string_view view = ids;
    std::string wire;
    AppendMessagePdus(&wire, PduBodyLimit(1024), 1, command, &view);
    std::vector<Pdv> pdvs = parse(wire, 1024);
    REQUIRE(pdvs.size() >= 6);
    std::string data;
    for (size_t i = 1; i < pdvs.size(); ++i) data += pdvs[i].bytes;
    CHECK(pdvs[0].bytes == command);
    CHECK(data == ids);
  }
  SECTION("a peer maximum of odd length") {
    // 101: after the command (96 bytes) a PDU has 95 bytes of value left, 1 in the first.
    for (const size_t limit : {size_t{101}, size_t{4097}}) {
      INFO("limit " << limit);
      const std::string ids(9000, 'i');
      const std::string_view view = ids;
      std::string wire;
      AppendMessagePdus(&wire, PduBodyLimit(static_cast<long>(limit)), 1, command, &view);
      std::vector<Pdv> pdvs = parse(wire, limit);
      REQUIRE(pdvs.size() >= 3);
      std::string data;
      for (size_t i = 1; i < pdvs.size(); ++i) {
        CHECK(pdvs[i].bytes.size() % 2 == 0);  // DCMTK refuses an odd fragment
        data += pdvs[i].bytes;
      }
      CHECK(pdvs[0].bytes == command);
      CHECK(data == ids);
    }
  }
  SECTION("no identifier") {
    std::string wire;
    AppendMessagePdus(&wire, 4096, 1, command, nullptr);
    std::vector<Pdv> pdvs = parse(wire, 4096);
    REQUIRE(pdvs.size() == 1);
    CHECK(pdvs[0].control == 0x03);
  }
}
