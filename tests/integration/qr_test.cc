// Query/retrieve against the real server with DCMTK's findscu, movescu and getscu.
#include <catch2/catch.hpp>

#include <csignal>
#include <map>
#include <regex>
#include <set>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/scu.h"

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "server/dicom/qr_scp.h"
#include "server/store/index.h"
#include "server/store/query.h"
#include "tests/support/server_fixture.h"
#include "tests/support/stored.h"

using namespace teleread;
using namespace teleread::test;

namespace {

struct Study {
  std::string member_ae, uid, series_uid;
  std::vector<std::string> sop_uids;
};

// Four studies from two members, with the attributes the matching tests need.
class QrFixture {
 public:
  QrFixture() : server_(dir_.path() / "server", Options()) {
    InitializeDicom();
    server_.Start();
    Add("ZZ_PACS", "张^三", "ZZ-GB", "GB18030", "20240105", "083000", "CT", 3, "ACC1", "胸部CT", "");
    Add("ZZ_PACS", "Zhang^Wei", "ZZ2", "ISO_IR 192", "20240110", "143000", "MR", 2, "ACC2", "Head MR", "Li^Ming");
    Add("LS_PACS", "张^三", "LS-UTF", "ISO_IR 192", "20240201", "101500", "CR", 1, "ACC3", "Chest", "");
    Add("LS_PACS", "Müller^Hans", "LS2", "ISO_IR 100", "20240301", "160000", "US", 2, "XYZ4", "Abdomen", "");
  }

  TestServer& server() { return server_; }
  const Study& study(size_t i) const { return studies_[i]; }
  const std::filesystem::path& dir() const { return dir_.path(); }
  // Zhuozhou's delivery port, where movescu (+P) listens: reserved until the first use.
  uint16_t zz_delivery_port() {
    ReleasePort(zz_port_);
    return zz_port_;
  }

  // A DCMTK query/retrieve tool: `argv` then "-k KEY" per key, then this server's address.
  CommandResult RunScu(std::vector<std::string> argv, const std::vector<std::string>& keys) {
    for (const std::string& k : keys) {
      argv.push_back("-k");
      argv.push_back(k);
    }
    argv.push_back("127.0.0.1");
    argv.push_back(server_.port_text());
    return RunCommand(argv);
  }

  // findscu with -X: every response data set, read back. Without `result` the C-FIND must end
  // with Success, so that "no matches" cannot stand for a refusal or a broken association.
  std::vector<std::unique_ptr<DcmFileFormat>> Find(const std::string& aet, const std::vector<std::string>& keys,
                                                   const std::string& model = "-S", CommandResult* result = nullptr,
                                                   const std::vector<std::string>& extra = {}) {
    std::filesystem::path out = dir_.path() / ("find-" + std::to_string(++runs_));
    std::filesystem::create_directories(out);
    std::vector<std::string> argv = {FINDSCU_BIN, model,     "-v", "-aet", aet,
                                     "-aec",      "LX_READ", "-X", "-od",  out.string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    CommandResult r = RunScu(argv, keys);
    if (result) {
      *result = r;
    } else {
      INFO(r.output);
      CHECK(r.exit_code == 0);
      CHECK_THAT(r.output, Catch::Contains("Received Final Find Response (Success)"));
    }
    std::vector<std::unique_ptr<DcmFileFormat>> responses;
    std::set<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(out)) files.insert(e.path());
    for (const auto& f : files) {
      auto ff = std::make_unique<DcmFileFormat>();
      REQUIRE(ff->loadFile(f.c_str()).good());
      responses.push_back(std::move(ff));
    }
    return responses;
  }

  std::multiset<std::string> Values(const std::vector<std::unique_ptr<DcmFileFormat>>& rs, const DcmTagKey& key) {
    std::multiset<std::string> values;
    for (const auto& r : rs) values.insert(Get(*r, key));
    return values;
  }

  static std::string Get(DcmFileFormat& ff, const DcmTagKey& key) {
    OFString v;
    ff.getDataset()->findAndGetOFStringArray(key, v);
    return v.c_str();
  }

 private:
  ServerOptions Options() {
    ServerOptions o;
    o.edits.push_back(ZhuozhouDeliveryPort(zz_port_ = FreePort()));
    return o;
  }

  void Add(const std::string& ae, const std::string& name, const std::string& pid, const std::string& charset,
           const std::string& date, const std::string& time, const std::string& modality, int n,
           const std::string& accession, const std::string& description, const std::string& referring) {
    samples::SeriesSpec spec;
    spec.patient_name = name;
    spec.patient_id = pid;
    spec.specific_character_set = charset;
    spec.study_date = date;
    spec.study_time = time;
    spec.modality = modality;
    spec.instances = n;
    spec.rows = spec.columns = 32;
    spec.accession_number = accession;
    spec.study_description = description;
    spec.referring_physician = referring;
    std::filesystem::path out = dir_.path() / ("study" + std::to_string(studies_.size()));
    auto files = samples::WriteSeries(spec, out);
    REQUIRE(files.ok());
    REQUIRE(StoreFiles(server_, ae, {out.string()}).exit_code == 0);
    Study s{ae, "", "", {}};
    for (const auto& f : files.value()) {
      auto summary = ReadInstanceSummary(f);
      REQUIRE(summary.ok());
      s.uid = summary->study_instance_uid;
      s.series_uid = summary->series_instance_uid;
      s.sop_uids.push_back(summary->sop_instance_uid);
    }
    studies_.push_back(s);
  }

  ScratchDir dir_;
  uint16_t zz_port_ = 0;
  TestServer server_;
  std::vector<Study> studies_;
  int runs_ = 0;
};

const std::string kStudy = "QueryRetrieveLevel=STUDY";

}  // namespace

TEST_CASE_METHOD(QrFixture, "C-FIND is scoped to the caller's own studies", "[qr][find]") {
  auto zz = Find("ZZ_PACS", {kStudy, "StudyInstanceUID", "PatientID"});
  CHECK(Values(zz, DCM_PatientID) == std::multiset<std::string>{"ZZ-GB", "ZZ2"});
  auto ls = Find("LS_PACS", {kStudy, "StudyInstanceUID", "PatientID"});
  CHECK(Values(ls, DCM_PatientID) == std::multiset<std::string>{"LS-UTF", "LS2"});
  auto centre = Find("LX_WS1", {kStudy, "PatientID"});
  CHECK(centre.size() == 4);
  // Asking for another member's study by its UID finds nothing.
  CHECK(Find("LS_PACS", {kStudy, "StudyInstanceUID=" + study(0).uid}).empty());
  CHECK(Find("LS_PACS", {kStudy, "PatientID=ZZ-GB"}).empty());
  CHECK(Find("LS_PACS", {"QueryRetrieveLevel=PATIENT", "PatientID"}, "-P").size() == 2);
  CHECK_THAT(server().Log(), Catch::Contains("C-FIND STUDY from LS_PACS (laishui): 0 match(es)"));
}

// One fixture for all the kinds (no SECTIONs: each would push the four studies again).
TEST_CASE_METHOD(QrFixture, "C-FIND matching kinds", "[qr][find]") {
  auto ids = [&](const std::vector<std::string>& keys) { return Values(Find("LX_WS1", keys), DCM_PatientID); };
  using Set = std::multiset<std::string>;
  {  // single value
    CHECK(ids({kStudy, "PatientID=ZZ2"}) == Set{"ZZ2"});
  }
  {  // universal
    CHECK(ids({kStudy, "PatientID"}).size() == 4);
  }
  {  // wildcards, person names case-insensitive
    CHECK(ids({kStudy, "PatientID", "PatientName=zhang*"}) == Set{"ZZ2"});
    CHECK(ids({kStudy, "PatientID", "PatientName=Z?ANG^W*"}) == Set{"ZZ2"});
    CHECK(ids({kStudy, "PatientID", "PatientName=*wei"}) == Set{"ZZ2"});
    CHECK(ids({kStudy, "SpecificCharacterSet=ISO_IR 192", "PatientID", "PatientName=MÜLLER^HANS"}) == Set{"LS2"});
    CHECK(ids({kStudy, "PatientID", "AccessionNumber=ACC*"}) == Set{"ZZ-GB", "ZZ2", "LS-UTF"});
    CHECK(ids({kStudy, "PatientID", "AccessionNumber=acc*"}).empty());  // not a person name: case matters
  }
  {  // UID list
    CHECK(ids({kStudy, "PatientID", "StudyInstanceUID=" + study(0).uid + "\\" + study(3).uid}) == Set{"ZZ-GB", "LS2"});
  }
  {  // date ranges
    CHECK(ids({kStudy, "PatientID", "StudyDate=20240101-20240131"}) == Set{"ZZ-GB", "ZZ2"});
    CHECK(ids({kStudy, "PatientID", "StudyDate=20240201-"}) == Set{"LS-UTF", "LS2"});
    CHECK(ids({kStudy, "PatientID", "StudyDate=-20240105"}) == Set{"ZZ-GB"});
    CHECK(ids({kStudy, "PatientID", "StudyDate=20240110"}) == Set{"ZZ2"});
  }
  {  // time ranges
    CHECK(ids({kStudy, "PatientID", "StudyTime=080000-110000"}) == Set{"ZZ-GB", "LS-UTF"});
    CHECK(ids({kStudy, "PatientID", "StudyTime=14-"}) == Set{"ZZ2", "LS2"});
    CHECK(ids({kStudy, "PatientID", "StudyDate=20240101-20240131", "StudyTime=-1000"}) == Set{"ZZ-GB"});
  }
  {  // modalities in study
    CHECK(ids({kStudy, "PatientID", "ModalitiesInStudy=MR"}) == Set{"ZZ2"});
    CHECK(ids({kStudy, "PatientID", "ModalitiesInStudy=CT\\MR"}) == Set{"ZZ-GB", "ZZ2"});
  }
  {  // referring physician
    CHECK(ids({kStudy, "PatientID", "ReferringPhysicianName=LI^MING"}) == Set{"ZZ2"});
  }
}

TEST_CASE_METHOD(QrFixture, "C-FIND return keys, counts and unsupported keys", "[qr][find]") {
  auto rs = Find("ZZ_PACS", {kStudy, "PatientID=ZZ-GB", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                             "NumberOfStudyRelatedInstances", "StudyDescription", "AccessionNumber", "InstitutionName",
                             "ReferringPhysicianName", "StudyDate", "StudyTime", "PatientBirthDate", "EthnicGroup"});
  REQUIRE(rs.size() == 1);
  DcmFileFormat& r = *rs[0];
  CHECK(Get(r, DCM_ModalitiesInStudy) == "CT");
  CHECK(Get(r, DCM_NumberOfStudyRelatedSeries) == "1");
  CHECK(Get(r, DCM_NumberOfStudyRelatedInstances) == "3");
  CHECK(Get(r, DCM_AccessionNumber) == "ACC1");
  CHECK(Get(r, DCM_StudyDate) == "20240105");
  CHECK(Get(r, DCM_StudyTime) == "083000");
  CHECK(Get(r, DCM_SpecificCharacterSet) == "ISO_IR 192");  // the query named none
  CHECK(r.getDataset()->tagExists(DCM_EthnicGroup));        // unsupported: returned empty, no error
  CHECK(Get(r, DCM_EthnicGroup).empty());
  CHECK(r.getDataset()->tagExists(DCM_InstitutionName));

  SECTION("PATIENT level (Patient Root)") {
    auto ps = Find("ZZ_PACS",
                   {"QueryRetrieveLevel=PATIENT", "PatientID=ZZ2", "PatientName", "NumberOfPatientRelatedStudies",
                    "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances"},
                   "-P");
    REQUIRE(ps.size() == 1);
    CHECK(Get(*ps[0], DCM_PatientName) == "Zhang^Wei");
    CHECK(Get(*ps[0], DCM_NumberOfPatientRelatedStudies) == "1");
    CHECK(Get(*ps[0], DCM_NumberOfPatientRelatedSeries) == "1");
    CHECK(Get(*ps[0], DCM_NumberOfPatientRelatedInstances) == "2");
  }
  SECTION("SERIES and IMAGE levels, both models") {
    for (const std::string model : {"-S", "-P"}) {
      auto series = Find("ZZ_PACS",
                         {"QueryRetrieveLevel=SERIES", "StudyInstanceUID=" + study(0).uid, "SeriesInstanceUID",
                          "Modality", "NumberOfSeriesRelatedInstances"},
                         model);
      REQUIRE(series.size() == 1);
      CHECK(Get(*series[0], DCM_Modality) == "CT");
      CHECK(Get(*series[0], DCM_NumberOfSeriesRelatedInstances) == "3");
      auto images = Find("ZZ_PACS",
                         {"QueryRetrieveLevel=IMAGE", "SeriesInstanceUID=" + study(0).series_uid, "SOPInstanceUID",
                          "SOPClassUID", "InstanceNumber"},
                         model);
      CHECK(Values(images, DCM_SOPInstanceUID) ==
            std::multiset<std::string>(study(0).sop_uids.begin(), study(0).sop_uids.end()));
    }
    CHECK(Find("ZZ_PACS", {"QueryRetrieveLevel=SERIES", "Modality=CR", "SeriesInstanceUID"}).empty());  // LS's
  }
  SECTION("a Study Root query at PATIENT level is refused") {
    CommandResult result;
    CHECK(Find("ZZ_PACS", {"QueryRetrieveLevel=PATIENT", "PatientID"}, "-S", &result).empty());
    CHECK_THAT(result.output, Catch::Contains("0xa900") || Catch::Contains("DoesNotMatchSOPClass") ||
                                  Catch::Contains("Identifier Does Not Match SOP Class"));
  }
}

TEST_CASE_METHOD(QrFixture, "C-FIND in GB18030 finds a patient sent in GB18030 or in UTF-8", "[qr][find][charset]") {
  auto gb = [](const std::string& utf8) { return EncodeFromUtf8("GB18030", utf8).value(); };
  for (const std::string name : {"张^三", "张*"}) {
    INFO(name);
    auto rs = Find(
        "LX_WS1", {kStudy, "SpecificCharacterSet=GB18030", "PatientName=" + gb(name), "PatientID", "StudyDescription"});
    CHECK(Values(rs, DCM_PatientID) == std::multiset<std::string>{"ZZ-GB", "LS-UTF"});
    for (const auto& r : rs) {
      CHECK(Get(*r, DCM_SpecificCharacterSet) == "GB18030");
      CHECK(Get(*r, DCM_PatientName) == gb("张^三"));  // bytes in the caller's character set
    }
  }
  // UTF-8 query: UTF-8 answers.
  auto rs =
      Find("LX_WS1", {kStudy, "SpecificCharacterSet=ISO_IR 192", "PatientName=张*", "PatientID", "StudyDescription"});
  REQUIRE(rs.size() == 2);
  for (const auto& r : rs) CHECK(Get(*r, DCM_PatientName) == "张^三");
}

TEST_CASE_METHOD(QrFixture, "C-MOVE to configured destinations with counts, scoped", "[qr][move]") {
  std::filesystem::path received = dir() / "received";
  std::filesystem::create_directories(received);
  auto move = [&](const std::string& aet, const std::string& dest, const std::vector<std::string>& keys) {
    return RunScu({MOVESCU_BIN, "-S", "-v", "-aet", aet, "-aec", "LX_READ", "-aem", dest, "+P",
                   std::to_string(zz_delivery_port()), "-od", received.string()},
                  keys);
  };
  auto files = [&] { return CountFiles(received); };
  SECTION("study level") {
    CommandResult r = move("ZZ_PACS", "ZZ_PACS", {kStudy, "StudyInstanceUID=" + study(0).uid});
    CHECK(r.exit_code == 0);
    CHECK(files() == 3);
    CHECK_THAT(server().Log(), Catch::Contains("C-MOVE from ZZ_PACS (zhuozhou): 3 sent, 0 failed"));
  }
  SECTION("series and instance levels") {
    CHECK(move("ZZ_PACS", "ZZ_PACS",
               {"QueryRetrieveLevel=SERIES", "StudyInstanceUID=" + study(1).uid,
                "SeriesInstanceUID=" + study(1).series_uid})
              .exit_code == 0);
    CHECK(files() == 2);
    CHECK(move("ZZ_PACS", "ZZ_PACS",
               {"QueryRetrieveLevel=IMAGE", "StudyInstanceUID=" + study(0).uid,
                "SeriesInstanceUID=" + study(0).series_uid, "SOPInstanceUID=" + study(0).sop_uids[1]})
              .exit_code == 0);
    CHECK(files() == 3);
  }
  SECTION("an unknown destination is refused with 0xA801") {
    CommandResult r = move("ZZ_PACS", "NOWHERE", {kStudy, "StudyInstanceUID=" + study(0).uid});
    CHECK_THAT(r.output, Catch::Contains("MoveDestinationUnknown") || Catch::Contains("a801"));
    CHECK(files() == 0);
  }
  SECTION("a member cannot move to another member's AE title") {
    CommandResult r = move("ZZ_PACS", "LS_PACS", {kStudy, "StudyInstanceUID=" + study(0).uid});
    CHECK_THAT(r.output, Catch::Contains("MoveDestinationUnknown") || Catch::Contains("a801"));
  }
  SECTION("another member's study: nothing sent, a failure status") {
    // The centre moves LS's study to ZZ's delivery AE legitimately; LS's own request for ZZ's study fails.
    CommandResult r = move("LS_PACS", "LS_PACS", {kStudy, "StudyInstanceUID=" + study(0).uid});
    CHECK_THAT(r.output, Catch::Contains("UnableToProcess") || Catch::Contains("c000"));
    CHECK(files() == 0);
    CHECK_THAT(server().Log(), Catch::Contains("C-MOVE from LS_PACS (laishui): nothing the caller may retrieve"));
  }
}

// The centre's AE titles (today: any of centre_ae_titles, plain or TLS) retrieve any member's
// study to any member's delivery AE; kept in one place for when the rule tightens.
const std::string kCentreAe = "LX_WS1";

TEST_CASE_METHOD(QrFixture, "a centre AE title moves any member's study to a member's delivery AE", "[qr][move]") {
  std::filesystem::path received = dir() / "received";
  std::filesystem::create_directories(received);
  // Laishui's study, moved by the centre to Zhuozhou's delivery AE (movescu listens there).
  CommandResult r = RunScu({MOVESCU_BIN, "-S", "-v", "-aet", kCentreAe, "-aec", "LX_READ", "-aem", "ZZ_PACS", "+P",
                            std::to_string(zz_delivery_port()), "-od", received.string()},
                           {kStudy, "StudyInstanceUID=" + study(3).uid});
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Catch::Contains("Received Final Move Response (Success)"));
  CHECK(CountFiles(received) == study(3).sop_uids.size());
  CHECK_THAT(server().Log(), Catch::Contains("C-MOVE from " + kCentreAe + " (centre): " +
                                             std::to_string(study(3).sop_uids.size()) + " sent, 0 failed"));
}

namespace {

// A C-MOVE by DcmSCU, so that the final response's identifier (Failed SOP Instance UID List)
// can be read; storage sub-operations go to `destination` as configured at the centre.
struct MoveOutcome {
  uint16_t status = 0;
  int completed = -1, failed = -1;
  std::set<std::string> failed_uids;
};

MoveOutcome MoveStudy(uint16_t port, const std::string& calling_ae, const std::string& destination,
                      const std::string& study_uid) {
  DcmSCU scu;
  scu.setAETitle(calling_ae.c_str());
  scu.setPeerAETitle("LX_READ");
  scu.setPeerHostName("127.0.0.1");
  scu.setPeerPort(port);
  scu.setACSETimeout(30);
  scu.setDIMSETimeout(60);
  scu.addPresentationContext(UID_MOVEStudyRootQueryRetrieveInformationModel, {UID_LittleEndianExplicitTransferSyntax});
  REQUIRE(scu.initNetwork().good());
  REQUIRE(scu.negotiateAssociation().good());
  const T_ASC_PresentationContextID id =
      scu.findPresentationContextID(UID_MOVEStudyRootQueryRetrieveInformationModel, "");
  REQUIRE(id != 0);
  DcmDataset query;
  query.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
  query.putAndInsertString(DCM_StudyInstanceUID, study_uid.c_str());
  OFList<RetrieveResponse*> responses;
  OFCondition c = scu.sendMOVERequest(id, destination.c_str(), &query, &responses);
  INFO(c.text());
  REQUIRE(c.good());
  REQUIRE_FALSE(responses.empty());
  MoveOutcome out;
  RetrieveResponse* last = responses.back();
  out.status = last->m_status;
  out.completed = last->m_numberOfCompletedSubops;
  out.failed = last->m_numberOfFailedSubops;
  OFString list;
  if (last->m_dataset && last->m_dataset->findAndGetOFStringArray(DCM_FailedSOPInstanceUIDList, list).good()) {
    std::string all = list.c_str();
    for (size_t start = 0, end; start <= all.size(); start = end + 1) {
      end = all.find('\\', start);
      if (end == std::string::npos) end = all.size();
      if (end > start) out.failed_uids.insert(all.substr(start, end - start));
    }
  }
  for (RetrieveResponse* rsp : responses) delete rsp;
  scu.releaseAssociation();
  return out;
}

}  // namespace

TEST_CASE_METHOD(QrFixture,
                 "C-MOVE failures: 0xA702 when nothing reached the destination, 0xB000 when some did, "
                 "with the Failed SOP Instance UID List",
                 "[qr][move]") {
  const Study& s = study(0);  // Zhuozhou's, three instances
  const std::set<std::string> all(s.sop_uids.begin(), s.sop_uids.end());
  SECTION("the destination is not listening: 0xA702, every instance listed") {
    MoveOutcome out = MoveStudy(server().port(), "ZZ_PACS", "ZZ_PACS", s.uid);
    CHECK(out.status == 0xA702);
    CHECK(out.completed == 0);
    CHECK(out.failed == 3);
    CHECK(out.failed_uids == all);
  }
  SECTION("one object cannot be sent (its stored copy is gone): 0xB000, that one listed") {
    auto index = Index::Open(server().storage() / "index.sqlite");
    REQUIRE(index.ok());
    auto lost = index.value()->FindInstance(s.sop_uids[1]);
    REQUIRE(lost.has_value());
    REQUIRE(RemoveStoredObject(server().storage(), lost->relative_path));
    const uint16_t port = zz_delivery_port();
    const std::filesystem::path received = dir() / "received";
    std::filesystem::create_directories(received);
    ChildProcess storescp;
    storescp.Start({STORESCP_BIN, "-aet", "ZZ_PACS", "-od", received.string(), std::to_string(port)},
                   dir() / "storescp.log");
    REQUIRE(WaitFor(
        [&] {
          return RunCommand({ECHOSCU_BIN, "-aec", "ZZ_PACS", "127.0.0.1", std::to_string(port)}).exit_code == 0;
        },
        30));
    MoveOutcome out = MoveStudy(server().port(), "ZZ_PACS", "ZZ_PACS", s.uid);
    INFO(server().Log());
    CHECK(out.status == 0xB000);
    CHECK(out.completed >= 1);
    CHECK(out.completed + out.failed == 3);
    // Today the failed send also ends the sub-association, so the instances after it fail too;
    // each failure is listed.
    CHECK(out.failed_uids.count(s.sop_uids[1]) == 1);
    CHECK(out.failed_uids.size() == static_cast<size_t>(out.failed));
    CHECK(CountFiles(received) == static_cast<size_t>(out.completed));
    storescp.Stop(SIGTERM);
  }
}

TEST_CASE_METHOD(QrFixture, "C-GET over the caller's own association, scoped", "[qr][get]") {
  auto get = [&](const std::string& aet, const std::vector<std::string>& keys, const std::filesystem::path& out) {
    std::filesystem::create_directories(out);
    return RunScu({GETSCU_BIN, "-S", "-aet", aet, "-aec", "LX_READ", "-od", out.string()}, keys);
  };
  auto count = [](const std::filesystem::path& d) { return CountFiles(d); };
  CHECK(get("LS_PACS", {kStudy, "StudyInstanceUID=" + study(3).uid}, dir() / "get1").exit_code == 0);
  CHECK(count(dir() / "get1") == 2);
  CommandResult other = get("LS_PACS", {kStudy, "StudyInstanceUID=" + study(0).uid}, dir() / "get2");
  CHECK(count(dir() / "get2") == 0);
  CHECK_THAT(server().Log(), Catch::Contains("C-GET from LS_PACS (laishui): nothing the caller may retrieve"));
  CHECK(get("LX_WS1", {kStudy, "StudyInstanceUID=" + study(0).uid}, dir() / "get3").exit_code == 0);
  CHECK(count(dir() / "get3") == 3);
}

TEST_CASE_METHOD(QrFixture, "C-MOVE and C-GET refuse wildcard or empty unique keys and send nothing",
                 "[qr][move][get]") {
  std::filesystem::path received = dir() / "received";
  std::filesystem::create_directories(received);
  auto move = [&](const std::string& model, const std::vector<std::string>& keys) {
    return RunScu({MOVESCU_BIN, model, "-v", "-aet", "ZZ_PACS", "-aec", "LX_READ", "-aem", "ZZ_PACS", "+P",
                   std::to_string(zz_delivery_port()), "-od", received.string()},
                  keys);
  };
  auto get = [&](const std::vector<std::string>& keys) {
    return RunScu({GETSCU_BIN, "-S", "-v", "-aet", "ZZ_PACS", "-aec", "LX_READ", "-od", received.string()}, keys);
  };
  auto refused = [](const CommandResult& r) {
    CHECK_THAT(r.output, Catch::Contains("0xa900") || Catch::Contains("DoesNotMatchSOPClass") ||
                             Catch::Contains("Identifier Does Not Match SOP Class"));
  };
  refused(move("-S", {kStudy, "StudyInstanceUID=*"}));
  refused(move("-S", {kStudy, "StudyInstanceUID=" + study(0).uid.substr(0, 8) + "*"}));
  refused(move("-S", {"QueryRetrieveLevel=SERIES", "StudyInstanceUID=*", "SeriesInstanceUID=" + study(0).series_uid}));
  refused(move("-P", {"QueryRetrieveLevel=PATIENT", "PatientID=ZZ?"}));
  refused(move("-S", {kStudy, "StudyInstanceUID="}));
  refused(get({kStudy, "StudyInstanceUID=*"}));
  refused(get({kStudy, "StudyInstanceUID"}));
  CHECK(CountFiles(received) == 0);
  const std::string log = server().Log();
  const std::string move_refused = "C-MOVE from ZZ_PACS (zhuozhou) refused: ";
  CHECK_THAT(log, Catch::Contains(move_refused + "StudyInstanceUID must not contain wildcards"));
  CHECK_THAT(log, Catch::Contains(move_refused + "PatientID must not contain wildcards"));
  CHECK_THAT(log, Catch::Contains(move_refused + "no StudyInstanceUID, the unique key of the STUDY level"));
  CHECK_THAT(log,
             Catch::Contains("C-GET from ZZ_PACS (zhuozhou) refused: StudyInstanceUID must not contain wildcards"));
  // A UID list is still a valid selection.
  CHECK(move("-S", {kStudy, "StudyInstanceUID=" + study(0).uid + "\\" + study(1).uid}).exit_code == 0);
  CHECK(CountFiles(received) == 5);
}

TEST_CASE_METHOD(QrFixture, "C-MOVE sub-operations carry the move originator and C-GET ones do not",
                 "[qr][move][get]") {
  std::filesystem::path moved_dir = dir() / "moved";
  std::filesystem::create_directories(moved_dir);
  // movescu is the destination itself; at -d it prints each incoming C-STORE-RQ in full.
  CommandResult moved = RunScu({MOVESCU_BIN, "-S", "-d", "-aet", "ZZ_PACS", "-aec", "LX_READ", "-aem", "ZZ_PACS", "+P",
                                std::to_string(zz_delivery_port()), "-od", moved_dir.string()},
                               {kStudy, "StudyInstanceUID=" + study(1).uid});
  REQUIRE(moved.exit_code == 0);
  CHECK(CountFiles(moved_dir) == 2);
  std::smatch move_id, originator_id;
  REQUIRE(std::regex_search(moved.output, move_id, std::regex(R"(C-MOVE RQ[\s\S]*?Message ID\s*: (\d+))")));
  CHECK(std::regex_search(moved.output, std::regex(R"(Move Originator AE Title\s*: ZZ_PACS)")));
  REQUIRE(std::regex_search(moved.output, originator_id, std::regex(R"(Move Originator ID\s*: (\d+))")));
  CHECK(originator_id[1] == move_id[1]);

  std::filesystem::path got_dir = dir() / "got";
  std::filesystem::create_directories(got_dir);
  CommandResult got = RunScu({GETSCU_BIN, "-S", "-d", "-aet", "ZZ_PACS", "-aec", "LX_READ", "-od", got_dir.string()},
                             {kStudy, "StudyInstanceUID=" + study(1).uid});
  REQUIRE(got.exit_code == 0);
  CHECK(CountFiles(got_dir) == 2);
  CHECK_THAT(got.output, Catch::Contains("C-STORE RQ"));
  CHECK_THAT(got.output, !Catch::Contains("Move Originator"));
}

TEST_CASE("sub-operation counts above 65535 saturate instead of wrapping", "[qr][unit]") {
  CHECK(SubOperationCount(0) == 0);
  CHECK(SubOperationCount(65535) == 65535);
  CHECK(SubOperationCount(65536) == 65535);  // a 16-bit counter would have wrapped to 0
  CHECK(SubOperationCount(70000) == 65535);
  CHECK(SubOperationCount(uint64_t{1} << 40) == 65535);
}

TEST_CASE_METHOD(QrFixture, "selective C-FIND queries use indexes", "[qr][plan]") {
  QueryEngine engine(server().storage() / "index.sqlite");
  auto plan = [&](std::vector<QrKey> keys, std::string scope = "", QrLevel level = QrLevel::kStudy) {
    FindRequest r;
    r.level = level;
    r.keys = std::move(keys);
    r.member_scope = std::move(scope);
    auto p = engine.ExplainFind(r);
    REQUIRE(p.ok());
    return p.value();
  };
  // The driving table is searched by index, never scanned.
  auto uses = [&](const std::string& p, const std::string& index) {
    INFO(p);
    CHECK(std::regex_search(p, std::regex("SEARCH \\w+ USING (COVERING )?INDEX " + index)));
    CHECK_THAT(p, !Catch::Contains("SCAN"));
  };
  uses(plan({{0x00100020, "ZZ2"}}), "patients_patient_id");
  uses(plan({{0x00100010, "ZHANG*"}}), "patient_name_keys_key");
  // Wildcards too, their heads a range whatever the pattern bound.
  uses(plan({{0x00100020, "ZZ*"}}), "patients_patient_id \\(patient_id>\\? AND patient_id<\\?\\)");
  uses(plan({{0x00080060, "C?"}}, "", QrLevel::kSeries), "series_modality \\(modality>\\? AND modality<\\?\\)");
  uses(plan({{0x00080020, "20240101-20240107"}}), "studies_date");
  uses(plan({{0x00080020, "20240101-20240107"}}, "zhuozhou"), "studies_member_date");
  uses(plan({{0x0020000D, study(0).uid}}), "sqlite_autoindex_studies");
}
