// ReadingApi::Handle without a socket: what each role may see and do.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "tests/unit/workflow_fixture.h"

using namespace teleread;
using teleread::test::ReceivedStudy;
using teleread::test::WorkflowFixture;

namespace {

const PeerCertificate kRadiologist = test::CentreCertificate("wang.li", "radiologist");
const PeerCertificate kAdmin = test::CentreCertificate("chief", "admin");
const PeerCertificate kZhuozhou = test::CentreCertificate("zhuozhou", "member");
const PeerCertificate kLaishui = test::CentreCertificate("LS_PACS", "member");

struct ApiFixture : WorkflowFixture {
  ReceivedStudy study = Receive("zhuozhou", "P1", "CT");
  std::string report_uid;
  ApiFixture() {
    Promote();
    REQUIRE(worklist->Claim(study.study_instance_uid, "wang.li").ok());
    Result<AcceptedReport> r = desk->Accept(study.study_instance_uid, Bytes(SignedReport(study, "wang.li")), "wang.li");
    REQUIRE(r.ok());
    report_uid = r->sop_instance_uid;
  }
  HttpResponse Get(const PeerCertificate& who, const std::string& target) {
    return api->Handle(HttpRequest{"GET", target, "", ""}, who);
  }
  HttpResponse Post(const PeerCertificate& who, const std::string& target) {
    return api->Handle(HttpRequest{"POST", target, "", ""}, who);
  }
  std::string StudyPath() const { return "/api/v1/studies/" + study.study_instance_uid; }
};

std::string ErrorOf(const HttpResponse& r) { return nlohmann::json::parse(r.body).value("error", ""); }

}  // namespace

TEST_CASE_METHOD(ApiFixture, "a member hospital's certificate reads its own reports and nothing of the reading centre",
                 "[workflow][api][authorisation]") {
  const std::string sop = study.evidence.front().sop_instance_uid;
  for (const std::string& target :
       {std::string("/api/v1/worklist"), StudyPath(), StudyPath() + "/priors", StudyPath() + "/archive",
        StudyPath() + "/instances/" + sop, std::string("/api/v1/deliveries")}) {
    INFO(target);
    const HttpResponse r = Get(kZhuozhou, target);
    CHECK(r.status == 403);
    CHECK(ErrorOf(r) == "a member hospital may only list and download its reports");
    CHECK(r.file.empty());
    CHECK(r.tar.empty());
  }
  CHECK(Post(kZhuozhou, StudyPath() + "/claim").status == 403);

  const HttpResponse own = Get(kZhuozhou, "/api/v1/reports?study=" + study.study_instance_uid);
  REQUIRE(own.status == 200);
  CHECK(nlohmann::json::parse(own.body)["items"].size() == 1);
  CHECK(Get(kZhuozhou, "/api/v1/reports/" + report_uid).status == 200);
  // Another member's report reads as absent, whether listed or fetched.
  const HttpResponse other = Get(kLaishui, "/api/v1/reports?study=" + study.study_instance_uid);
  REQUIRE(other.status == 200);
  CHECK(nlohmann::json::parse(other.body)["items"].empty());
  CHECK(Get(kLaishui, "/api/v1/reports/" + report_uid).status == 404);
}

TEST_CASE_METHOD(ApiFixture, "radiologists read and claim, and only admins reassign and run the outbox",
                 "[workflow][api][authorisation]") {
  const HttpResponse list = Get(kRadiologist, "/api/v1/worklist?state=reported");
  REQUIRE(list.status == 200);
  const nlohmann::json items = nlohmann::json::parse(list.body)["items"];
  REQUIRE(items.size() == 1);
  CHECK(items[0]["patient_name"] == "Test^P1");
  CHECK(items[0]["patient_id"] == "P1");

  const HttpResponse detail = Get(kRadiologist, StudyPath());
  REQUIRE(detail.status == 200);
  CHECK(nlohmann::json::parse(detail.body)["patient_name"] == "Test^P1");
  CHECK(Count("audit_log", "action = 'view' AND actor = 'wang.li'") == 1);
  const HttpResponse instance =
      Get(kRadiologist, StudyPath() + "/instances/" + study.evidence.front().sop_instance_uid);
  CHECK(instance.status == 200);
  CHECK(std::filesystem::exists(instance.file));
  CHECK(Count("audit_log", "action = 'download' AND actor = 'wang.li'") == 1);

  CHECK(Get(kRadiologist, "/api/v1/deliveries").status == 403);
  CHECK(ErrorOf(Post(kRadiologist, StudyPath() + "/reassign?to=zhao.min")) == "only an admin may reassign a claim");
  CHECK(Post(kRadiologist, "/api/v1/deliveries/1/retry").status == 403);

  CHECK(Get(kAdmin, "/api/v1/deliveries").status == 200);
  CHECK(Post(kAdmin, StudyPath() + "/reassign?to=nobody").status == 400);
  CHECK(Post(kAdmin, StudyPath() + "/reassign?to=zhao.min").status == 200);
  CHECK(api->Handle(HttpRequest{"POST", StudyPath() + "/reports", "x", "application/dicom"}, kAdmin).status == 403);
}

TEST_CASE_METHOD(ApiFixture, "a certificate that stands for nobody here is refused and audited",
                 "[workflow][api][authorisation]") {
  const PeerCertificate stranger{"CN=li.na,OU=radiologist,O=Lixian Regional Imaging Reading Centre", "li.na",
                                 "radiologist"};
  const PeerCertificate wrong_subject{"CN=wang.li,OU=radiologist,O=Elsewhere", "wang.li", "radiologist"};
  const PeerCertificate wrong_unit{"CN=wang.li,OU=member,O=Lixian Regional Imaging Reading Centre", "wang.li",
                                   "member"};
  for (const PeerCertificate& who : {stranger, wrong_subject, wrong_unit, PeerCertificate{}}) {
    INFO(who.subject);
    const HttpResponse r = Get(who, "/api/v1/worklist");
    CHECK(r.status == 403);
    CHECK(nlohmann::json::parse(r.body)["error"] ==
          "this certificate does not belong to a configured radiologist, admin or member hospital");
  }
  CHECK(Count("audit_log", "action = 'refused'") == 4);
  CHECK(Count("audit_log", "action = 'refused' AND actor = '(no certificate)'") == 1);
}

TEST_CASE_METHOD(ApiFixture, "the gate defers a stranger's refusal and its audit entry to the handler pool",
                 "[workflow][api][authorisation]") {
  const PeerCertificate stranger{"CN=li.na,OU=radiologist,O=Lixian Regional Imaging Reading Centre", "li.na",
                                 "radiologist"};
  uint64_t limit = 1 << 20;
  std::optional<HttpResponse> gate = api->Admit(HttpRequest{"GET", "/api/v1/worklist", "", ""}, stranger, limit);
  REQUIRE(gate.has_value());
  REQUIRE(gate->deferred);     // on a TLS I/O thread, Admit neither writes nor waits for the audit
  CHECK(gate->status == 500);  // sent unmade by mistake: an error, not a refusal without its audit
  CHECK(Count("audit_log", "action = 'refused'") == 0);
  const HttpResponse refused = gate->deferred();
  CHECK(refused.status == 403);
  CHECK(ErrorOf(refused) == "this certificate does not belong to a configured radiologist, admin or member hospital");
  CHECK(Count("audit_log", "action = 'refused' AND actor = '" + stranger.subject + "'") == 1);
  // A known reader is admitted, with the route's body limit.
  std::optional<HttpResponse> admitted =
      api->Admit(HttpRequest{"GET", "/api/v1/worklist", "", ""}, kRadiologist, limit);
  CHECK_FALSE(admitted.has_value());
  CHECK(limit == 64u << 10);
}
