// The report desk without a socket: every refusal names its reason and changes nothing; an
// accepted report is stored with its task, delivery and audit entry in one go.
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"

#include "common/encapsulated_pdf.h"
#include "common/signing.h"
#include "server/pki/pki.h"
#include "tests/unit/workflow_fixture.h"

using namespace teleread;
using teleread::test::ReceivedStudy;
using teleread::test::WorkflowFixture;

namespace {

// Changes one attribute of a DICOM file in place.
std::function<void(const std::filesystem::path&)> SetAttribute(DcmTagKey tag, const char* value) {
  return [tag, value](const std::filesystem::path& file) {
    DcmFileFormat ff;
    REQUIRE(ff.loadFile(file.c_str()).good());
    REQUIRE(ff.getDataset()->putAndInsertString(tag, value).good());
    REQUIRE(ff.saveFile(file.c_str(), EXS_LittleEndianExplicit).good());
  };
}

struct DeskFixture : WorkflowFixture {
  ReceivedStudy study = Receive("zhuozhou", "P1", "CT", "", 2);
  DeskFixture() {
    Promote();
    REQUIRE(worklist->Claim(study.study_instance_uid, "wang.li").ok());
  }

  // Submits `report` as `caller`; on a refusal checks that nothing was stored.
  Result<AcceptedReport> Submit(const std::filesystem::path& report, const std::string& caller = "wang.li") {
    const int64_t instances = Count("instances"), reports = Count("reports"), deliveries = Count("deliveries");
    Result<AcceptedReport> r = desk->Accept(study.study_instance_uid, Bytes(report), caller);
    if (!r.ok()) {
      CHECK(Count("instances") == instances);
      CHECK(Count("reports") == reports);
      CHECK(Count("deliveries") == deliveries);
    }
    return r;
  }

  // `report` as the member's PACS would send it by C-STORE: indexed, without a report row.
  StoreOutcome StoreAsMember(const std::filesystem::path& report) {
    auto summary = ReadInstanceSummary(report);
    REQUIRE(summary.ok());
    const std::filesystem::path sent = store->NewTempPath();
    std::filesystem::copy_file(report, sent);
    StoreRequest req;
    req.temp_file = sent;
    req.calling_ae_title = "ZZ_PACS";
    req.member_id = "zhuozhou";
    req.negotiated_sop_class_uid = summary->sop_class_uid;
    req.affected_sop_instance_uid = summary->sop_instance_uid;
    return ingest->Store(req);
  }
};

void Refused(const Result<AcceptedReport>& r, Status::Code code, const std::string& reason) {
  REQUIRE_FALSE(r.ok());
  INFO(r.status().ToString());
  CHECK(r.status().code() == code);
  CHECK_THAT(r.status().message(), Catch::Contains(reason));
}

}  // namespace

TEST_CASE_METHOD(DeskFixture, "a signed report of the claimed study is stored with its task, delivery and audit entry",
                 "[workflow][desk]") {
  Result<AcceptedReport> r = Submit(SignedReport(study, "wang.li"));
  REQUIRE(r.ok());
  CHECK_FALSE(r->resent);
  CHECK(r->signer == "wang.li");
  CHECK(worklist->Task(study.study_instance_uid)->state == "reported");
  CHECK(Count("reports") == 1);
  CHECK(Count("deliveries", "state = 'pending' AND member_id = 'zhuozhou'") == 2);  // the SR and its PDF copy
  CHECK(Count("audit_log", "action = 'sign' AND actor = 'wang.li'") == 1);
  CHECK(Count("instances") == 4);  // two CT slices, the SR, its PDF copy
  CHECK_FALSE(r->pdf_sop_instance_uid.empty());
  CHECK(Count("instances", "sop_instance_uid = '" + r->pdf_sop_instance_uid + "' AND sop_class_uid = '" +
                               kEncapsulatedPdfClass + "'") == 1);
}

TEST_CASE_METHOD(DeskFixture, "the same report sent again is accepted once and changes nothing", "[workflow][desk]") {
  const std::filesystem::path report = SignedReport(study, "wang.li");
  REQUIRE(Submit(report).ok());
  Result<AcceptedReport> again = Submit(report);
  REQUIRE(again.ok());
  CHECK(again->resent);
  CHECK(Count("reports") == 1);
  CHECK(Count("deliveries") == 2);  // the SR and its PDF copy, once
  CHECK(Count("instances", "sop_class_uid = '1.2.840.10008.5.1.4.1.1.104.1'") == 1);
  CHECK(Count("audit_log", "action = 'sign'") == 1);
}

TEST_CASE_METHOD(DeskFixture, "the report desk refuses, with the reason and nothing stored", "[workflow][desk]") {
  SECTION("bytes that are no DICOM file") {
    Refused(desk->Accept(study.study_instance_uid, "not a report", "wang.li"), Status::Code::kInvalidArgument,
            "not a readable DICOM file");
  }
  SECTION("an unsigned report") {
    const std::filesystem::path signed_report = SignedReport(study, "wang.li");
    Refused(Submit(signed_report.string() + ".unsigned"), Status::Code::kCorruption, "signature check failed");
  }
  SECTION("a report signed by a certificate of another CA") {
    REQUIRE(InitCertificateAuthority(dir.path() / "foreign", "Somewhere Else").ok());
    IssueRequest r;
    r.kind = CertKind::kRadiologist;
    r.common_name = "wang.li";
    r.organization = "Somewhere Else";
    REQUIRE(IssueCertificate(dir.path() / "foreign", r).ok());
    const std::filesystem::path report = SignedReport(study, "wang.li");
    // Re-signed with the foreign wang.li's key over the unsigned SR.
    const std::filesystem::path foreign = dir.path() / "foreign-signed.dcm";
    REQUIRE(SignReportFile(report.string() + ".unsigned", foreign, dir.path() / "foreign" / "wang.li.pem",
                           dir.path() / "foreign" / "wang.li.key")
                .ok());
    Refused(Submit(foreign), Status::Code::kCorruption, "signature check failed");
  }
  SECTION("a report signed by another radiologist") {
    Refused(Submit(SignedReport(study, "zhao.min")), Status::Code::kPermissionDenied, "signed by zhao.min, not by you");
  }
  SECTION("a report signed by an admin") {
    Refused(Submit(SignedReport(study, "chief"), "chief"), Status::Code::kPermissionDenied, "which is no radiologist");
  }
  SECTION("a report that is not COMPLETE") {
    Refused(Submit(SignedReport(study, "wang.li", std::nullopt, SetAttribute(DCM_CompletionFlag, "PARTIAL"))),
            Status::Code::kInvalidArgument, "not COMPLETE");
  }
  SECTION("a report that is not VERIFIED") {
    Refused(Submit(SignedReport(study, "wang.li", std::nullopt, SetAttribute(DCM_VerificationFlag, "UNVERIFIED"))),
            Status::Code::kInvalidArgument, "not VERIFIED");
  }
  SECTION("a report naming another patient") {
    Refused(Submit(SignedReport(study, "wang.li", std::nullopt, SetAttribute(DCM_PatientID, "OTHER"))),
            Status::Code::kInvalidArgument, "Patient ID 'OTHER' is not the study's");
  }
  SECTION("a report naming another accession") {
    Refused(Submit(SignedReport(study, "wang.li", std::nullopt, SetAttribute(DCM_AccessionNumber, "X9"))),
            Status::Code::kInvalidArgument, "Accession Number 'X9' is not the study's");
  }
  SECTION("a report of another study") {
    const ReceivedStudy other = Receive("zhuozhou", "P1", "CT");
    Refused(Submit(SignedReport(other, "wang.li")), Status::Code::kInvalidArgument, "is for study");
  }
  SECTION("evidence from outside the study") {
    const ReceivedStudy other = Receive("zhuozhou", "P1", "CT");
    ReceivedStudy mixed = study;
    mixed.evidence.push_back(other.evidence.front());
    Refused(Submit(SignedReport(mixed, "wang.li")), Status::Code::kInvalidArgument, "is not an instance of the study");
  }
  SECTION("a study that is not claimed by the caller") {
    REQUIRE(worklist->Release(study.study_instance_uid, "wang.li").ok());
    Refused(Submit(SignedReport(study, "wang.li")), Status::Code::kConflict, "not claimed: claim it first");
    REQUIRE(worklist->Claim(study.study_instance_uid, "zhao.min").ok());
    Refused(Submit(SignedReport(study, "wang.li")), Status::Code::kConflict, "claimed by zhao.min");
  }
  SECTION("a claim that has expired") {
    now_ms += int64_t{config.reading.lease_minutes} * 60'000 + 1;
    Refused(Submit(SignedReport(study, "wang.li")), Status::Code::kConflict, "your claim expired at");
  }
  SECTION("a radiologist who is not configured") {
    IssueRequest r;
    r.kind = CertKind::kRadiologist;
    r.common_name = "li.na";
    r.organization = test::kCentreOrganization;
    REQUIRE(IssueCertificate(pki_dir(), r).ok());
    Refused(Submit(SignedReport(study, "li.na"), "li.na"), Status::Code::kPermissionDenied,
            "li.na is not a configured radiologist");
  }
  SECTION("a full disk") {
    const std::filesystem::path report = SignedReport(study, "wang.li");
    config.centre.min_free_disk_mb = uint64_t{1} << 40;  // more than any disk has
    Refused(Submit(report), Status::Code::kNoSpace, "storage is full");
  }
  SECTION("a signing certificate other than the configured one") {
    for (Radiologist& r : config.radiologists) {
      if (r.id == "wang.li") r.certificate_subject = "CN=wang.li,OU=radiologist,O=Elsewhere";
    }
    Refused(Submit(SignedReport(study, "wang.li")), Status::Code::kPermissionDenied, "is not the one configured");
  }
}

TEST_CASE_METHOD(DeskFixture, "amendments: by the signer or an assignee, once per report", "[workflow][desk][amend]") {
  const std::filesystem::path first = SignedReport(study, "wang.li");
  Result<AcceptedReport> accepted = Submit(first);
  REQUIRE(accepted.ok());
  const InstanceRef ref{accepted->series_instance_uid, kBasicTextSrClass, accepted->sop_instance_uid};

  Refused(Submit(SignedReport(study, "zhao.min", ref), "zhao.min"), Status::Code::kPermissionDenied,
          "only wang.li, who signed");
  InstanceRef unknown = ref;
  unknown.sop_instance_uid = "1.2.3.4.5";
  Refused(Submit(SignedReport(study, "wang.li", unknown)), Status::Code::kInvalidArgument,
          "is no report of this study");

  Result<AcceptedReport> amended = Submit(SignedReport(study, "wang.li", ref));
  REQUIRE(amended.ok());
  CHECK(amended->predecessor_sop_instance_uid == ref.sop_instance_uid);
  CHECK(worklist->Task(study.study_instance_uid)->state == "amended");
  CHECK(Count("audit_log", "action = 'amend'") == 1);
  Refused(Submit(SignedReport(study, "wang.li", ref)), Status::Code::kConflict, "was already amended by");

  // An admin hands the right to amend to another radiologist.
  REQUIRE(worklist->Reassign(study.study_instance_uid, "zhao.min", "chief").ok());
  const InstanceRef latest{amended->series_instance_uid, kBasicTextSrClass, amended->sop_instance_uid};
  CHECK(Submit(SignedReport(study, "zhao.min", latest), "zhao.min").ok());
}

TEST_CASE_METHOD(DeskFixture, "a report whose SR was stored by C-STORE before gets its PDF copy all the same",
                 "[workflow][desk][pdf]") {
  const std::filesystem::path report = SignedReport(study, "wang.li");
  // The signed SR arrives first as a C-STORE from the member: indexed, without a report row.
  REQUIRE(StoreAsMember(report).code == IngestCode::kStored);
  REQUIRE(Count("reports") == 0);

  Result<AcceptedReport> r = Submit(report);
  REQUIRE(r.ok());
  CHECK_FALSE(r->resent);
  CHECK(Count("reports") == 1);
  // Its PDF copy went with the report row: named, indexed, delivered after the SR.
  REQUIRE_FALSE(r->pdf_sop_instance_uid.empty());
  CHECK(Count("reports", "pdf_sop_instance_uid = '" + r->pdf_sop_instance_uid + "'") == 1);
  CHECK(Count("instances", "sop_instance_uid = '" + r->pdf_sop_instance_uid + "' AND sop_class_uid = '" +
                               kEncapsulatedPdfClass + "'") == 1);
  CHECK(Count("deliveries", "sop_instance_uid = '" + r->pdf_sop_instance_uid + "'") == 1);
  CHECK(Count("deliveries") == 2);
  CHECK(Count("deliveries", "sop_instance_uid NOT IN (SELECT sop_instance_uid FROM instances)") == 0);
  Result<StoredReport> copy = stores->reads.ReportPdf(r->sop_instance_uid, "");
  REQUIRE(copy.ok());
  CHECK(store->Open(copy->relative_path).ok());  // its bytes
}

TEST_CASE_METHOD(DeskFixture, "a PDF copy kept as a file goes with a report whose SR was indexed before, or not at all",
                 "[workflow][desk][pdf][tiers]") {
  store->set_small_object_bytes(0);  // the SR and its copy are files
  const std::filesystem::path report = SignedReport(study, "wang.li");
  REQUIRE(StoreAsMember(report).code == IngestCode::kStored);
  const auto files = [&] { return test::CountFiles(dir.path() / "storage" / "objects", true); };
  const size_t before = files();

  Result<AcceptedReport> r = Submit(report);
  REQUIRE(r.ok());
  REQUIRE_FALSE(r->pdf_sop_instance_uid.empty());
  CHECK(Count("instances", "sop_instance_uid = '" + r->pdf_sop_instance_uid + "'") == 1);
  CHECK(files() == before + 1);  // the copy's file
  // Sent again later: its row found, no second copy made, no file left behind.
  now_ms += 60'000;
  Result<AcceptedReport> again = Submit(report);
  REQUIRE(again.ok());
  CHECK(again->resent);
  CHECK(again->pdf_sop_instance_uid == r->pdf_sop_instance_uid);
  CHECK(again->accepted_ms == r->accepted_ms);
  CHECK(files() == before + 1);
  CHECK(Count("instances", "sop_class_uid = '" + std::string(kEncapsulatedPdfClass) + "'") == 1);
}

TEST_CASE_METHOD(DeskFixture, "identical reports submitted at once are accepted once and the others see it",
                 "[workflow][desk][race]") {
  const std::string bytes = Bytes(SignedReport(study, "wang.li"));
  // The desk reads its clock just before the "accepted before?" look-up: a latch there lets all
  // of them through together, each then making its PDF copy (milliseconds) before any can commit.
  constexpr int kSubmitters = 6;
  std::mutex mu;
  std::condition_variable all_there;
  int arrived = 0;
  ReportDesk racing(
      config, stores->reports, *store, *ingest,
      [&] {
        std::unique_lock<std::mutex> lock(mu);
        if (++arrived == kSubmitters) all_there.notify_all();
        all_there.wait_for(lock, std::chrono::seconds(20), [&] { return arrived >= kSubmitters; });
        return now_ms;
      },
      nullptr);
  std::vector<std::future<Result<AcceptedReport>>> results;
  for (int i = 0; i < kSubmitters; ++i) {
    results.push_back(
        std::async(std::launch::async, [&] { return racing.Accept(study.study_instance_uid, bytes, "wang.li"); }));
  }
  int first = 0;
  for (auto& f : results) {
    Result<AcceptedReport> r = f.get();
    REQUIRE(r.ok());
    if (!r->resent) ++first;
    // Every reply names the one stored PDF copy.
    CHECK(Count("instances", "sop_instance_uid = '" + r->pdf_sop_instance_uid + "'") == 1);
    CHECK(Count("reports", "pdf_sop_instance_uid = '" + r->pdf_sop_instance_uid + "'") == 1);
  }
  CHECK(arrived == kSubmitters);  // all were let through the latch together
  CHECK(first == 1);              // one acceptance; the others are its re-sends
  CHECK(Count("reports") == 1);
  CHECK(Count("deliveries") == 2);  // the SR and its one PDF copy
  CHECK(Count("instances", "sop_class_uid = '" + std::string(kEncapsulatedPdfClass) + "'") == 1);
  CHECK(Count("audit_log", "action = 'sign'") == 1);
}
