// C-CANCEL of C-FIND, C-MOVE and C-GET. Each cancel reaches the centre at a point the test
// fixes, not by racing its responses: in the same TCP segment as the request or as the answer to
// a C-GET's C-STORE, or while a C-MOVE destination holds its answer to an object. So the counts
// are exact, and the tests can run beside others.
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcuid.h"

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "tests/support/holding_scp.h"
#include "tests/support/raw_scu.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

constexpr int kInstances = 10;

// A server holding one Zhuozhou study of kInstances small CT images; Zhuozhou's C-MOVE
// destination (its delivery AE, ZZ_PACS) is on a port of the test's own.
class CancelFixture {
 public:
  CancelFixture() : server_(dir_.path() / "server", Options()) {
    InitializeDicom();
    server_.Start();
    samples::SeriesSpec spec;
    spec.patient_id = "MANY";
    spec.instances = kInstances;
    spec.rows = spec.columns = 8;
    auto files = samples::WriteSeries(spec, dir_.path() / "in");
    REQUIRE(files.ok());
    study_ = ReadInstanceSummary(files.value().front()).value().study_instance_uid;
    CommandResult stored = StoreFiles(server_, "ZZ_PACS", {(dir_.path() / "in").string()});
    REQUIRE(StoreResponses(stored) == std::vector<std::string>(kInstances, "Success"));
  }

  // The study-level identifier of the stored study.
  std::string StudyIdentifier() const {
    DcmDataset keys;
    keys.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
    keys.putAndInsertString(DCM_StudyInstanceUID, study_.c_str());
    return EncodeDataSet(keys, EXS_LittleEndianExplicit);
  }

  // Zhuozhou's delivery port, handed over for the destination to listen on.
  uint16_t destination_port() {
    ReleasePort(destination_port_);
    return destination_port_;
  }

 protected:
  ServerOptions Options() {
    ServerOptions o;
    o.edits.push_back(ZhuozhouDeliveryPort(destination_port_ = FreePort()));
    return o;
  }

  ScratchDir dir_;
  uint16_t destination_port_ = 0;
  TestServer server_;
  std::string study_;
};

}  // namespace

TEST_CASE_METHOD(CancelFixture, "C-CANCEL stops a C-FIND before its first match is sent", "[qr][find][cancel]") {
  DcmDataset keys;
  keys.putAndInsertString(DCM_QueryRetrieveLevel, "IMAGE");
  keys.putAndInsertString(DCM_SOPInstanceUID, "");
  const std::string identifier = EncodeDataSet(keys, EXS_LittleEndianExplicit);
  RawStoreScu scu(server_.port(), "ZZ_PACS",
                  {{UID_FINDStudyRootQueryRetrieveInformationModel, UID_LittleEndianExplicitTransferSyntax}});
  REQUIRE(scu.Connect() == "");
  RawStoreScu::CancelAt at_once;
  at_once.with_request = true;
  RawStoreScu::Outcome cancelled =
      scu.Retrieve(0, 0x0020, UID_FINDStudyRootQueryRetrieveInformationModel, identifier, "", at_once);
  CHECK(cancelled.status == 0xFE00);
  CHECK(cancelled.pending == 0);
  // The association goes on, and the same query uncancelled finds every instance.
  RawStoreScu::Outcome all = scu.Retrieve(0, 0x0020, UID_FINDStudyRootQueryRetrieveInformationModel, identifier);
  CHECK(all.status == 0x0000);
  CHECK(all.pending == kInstances);
  scu.Release();
  REQUIRE(server_.Stop() == 0);
  const std::string log = server_.Log();
  CHECK(CountOccurrences(log, "C-FIND IMAGE from ZZ_PACS (zhuozhou): 0 match(es)") == 1);
  CHECK(CountOccurrences(log, "C-FIND IMAGE from ZZ_PACS (zhuozhou): " + std::to_string(kInstances) + " match(es)") ==
        1);
}

TEST_CASE_METHOD(CancelFixture, "C-CANCEL of a C-MOVE stops its sub-operations and answers the counts",
                 "[qr][move][cancel]") {
  // The destination holds its answer to the 2nd object; meanwhile the cancel goes out, so the
  // centre finds it as soon as that sub-operation completes.
  const uint16_t port = destination_port();
  HoldingStoreScp destination(port, "ZZ_PACS", UID_CTImageStorage, 2);
  REQUIRE(destination.listening());
  RawStoreScu scu(server_.port(), "ZZ_PACS",
                  {{UID_MOVEStudyRootQueryRetrieveInformationModel, UID_LittleEndianExplicitTransferSyntax}});
  REQUIRE(scu.Connect() == "");
  RawStoreScu::CancelAt cancel;
  bool held = false;
  cancel.after_pending = [&](int pending) {
    if (pending != 1) return;
    held = destination.WaitUntilHeld(60);
    scu.Cancel();
    destination.Release();
  };
  RawStoreScu::Outcome moved =
      scu.Retrieve(0, 0x0021, UID_MOVEStudyRootQueryRetrieveInformationModel, StudyIdentifier(), "ZZ_PACS", cancel);
  CHECK(held);
  CHECK(moved.status == 0xFE00);
  CHECK(moved.pending == 2);
  CHECK(moved.completed == 2);
  CHECK(moved.failed == 0);
  CHECK(moved.remaining == kInstances - 2);
  // The centre ends its association to the destination; nothing more was sent on it.
  CHECK(destination.WaitUntilAssociationEnded(60));
  CHECK(destination.received() == 2);

  // The same association moves the whole study afterwards.
  RawStoreScu::Outcome all =
      scu.Retrieve(0, 0x0021, UID_MOVEStudyRootQueryRetrieveInformationModel, StudyIdentifier(), "ZZ_PACS");
  CHECK(all.status == 0x0000);
  CHECK(all.completed == kInstances);
  CHECK(destination.received() == 2 + kInstances);
  scu.Release();
  CHECK(server_.Stop() == 0);
}

TEST_CASE_METHOD(CancelFixture, "C-CANCEL of a C-GET stops its sub-operations and answers the counts",
                 "[qr][get][cancel]") {
  RawStoreScu scu(server_.port(), "ZZ_PACS",
                  {{UID_GETStudyRootQueryRetrieveInformationModel, UID_LittleEndianExplicitTransferSyntax},
                   {UID_CTImageStorage, UID_LittleEndianExplicitTransferSyntax, true}});
  REQUIRE(scu.Connect() == "");
  // The cancel travels with the answer to the 2nd C-STORE: the centre reads it before it would
  // send the 3rd.
  RawStoreScu::CancelAt cancel;
  cancel.with_store_answer = 2;
  RawStoreScu::Outcome got =
      scu.Retrieve(0, 0x0010, UID_GETStudyRootQueryRetrieveInformationModel, StudyIdentifier(), "", cancel);
  INFO(got.error_comment);
  CHECK(got.status == 0xFE00);
  CHECK(got.stores == 2);
  CHECK(got.completed == 2);
  CHECK(got.failed == 0);
  CHECK(got.remaining == kInstances - 2);

  RawStoreScu::Outcome all = scu.Retrieve(0, 0x0010, UID_GETStudyRootQueryRetrieveInformationModel, StudyIdentifier());
  CHECK(all.status == 0x0000);
  CHECK(all.stores == kInstances);
  CHECK(all.completed == kInstances);
  scu.Release();
  CHECK(server_.Stop() == 0);
}
