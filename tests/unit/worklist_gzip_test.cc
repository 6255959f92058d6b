// The worklist in gzip (Accept-Encoding): a kept page is compressed once and its bytes shared by
// every reader routed alike, each answer carrying its own reader's parts (critical reminders)
// around them, each view audited for its reader before the answer, and no reader ever given
// the bytes of a page routed otherwise.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "common/gunzip.h"
#include "server/http/gzip_splice.h"
#include "server/reading/critical_results.h"
#include "server/store/sqlite.h"
#include "tests/unit/workflow_fixture.h"

using namespace teleread;
using nlohmann::json;
using teleread::test::ReceivedStudy;
using teleread::test::WorkflowFixture;

namespace {

const PeerCertificate kWang = test::CentreCertificate("wang.li", "radiologist");
const PeerCertificate kChen = test::CentreCertificate("chen.jie", "radiologist");
const PeerCertificate kAdmin = test::CentreCertificate("chief", "admin");
const PeerCertificate kZhao = test::CentreCertificate("zhao.min", "radiologist");

// wang.li reads CT, MR, CR, DX; chen.jie is routed as wang.li is; zhao.min reads everything.
// wang.li signed a critical report of the first study that the member has not acknowledged.
struct GzipFixture : WorkflowFixture {
  ReceivedStudy first = Receive("zhuozhou", "P1", "CT");
  ReceivedStudy ecg = Receive("zhuozhou", "P9", "ECG");  // not among wang.li's modalities
  std::unique_ptr<CriticalResults> critical;
  const std::string critical_sop = "2.25.777001";

  GzipFixture() {
    Promote();
    Radiologist twin = config.radiologists.front();
    REQUIRE(twin.id == "wang.li");
    twin.id = "chen.jie";
    twin.certificate_subject = kChen.subject;
    config.radiologists.push_back(twin);
    worklist = std::make_unique<Worklist>(
        stores->tasks, stores->audit, int64_t{config.reading.lease_minutes} * 60'000, [this] { return now_ms; },
        config.radiologists);
    critical = std::make_unique<CriticalResults>(config, stores->critical, nullptr, [this] { return now_ms; });
    api = std::make_unique<ReadingApi>(config, *worklist, stores->reads, *store, std::vector<MetricsSource>{},
                                       desk.get(), outbox.get(), nullptr, critical.get());
    REQUIRE(index
                ->Write([this](Database& db) {
                  Statement q(db.handle(), "SELECT id FROM studies WHERE study_instance_uid = ?1");
                  q.Bind(1, first.study_instance_uid);
                  if (Result<bool> row = q.Step(); !row.ok() || !row.value()) return Status::NotFound("study");
                  return OpenCriticalResult(db, critical_sop, q.Int(0), first.study_instance_uid, "zhuozhou", "wang.li",
                                            false, now_ms);
                })
                .ok());
  }

  HttpResponse Get(const PeerCertificate& who, const std::string& accept_encoding,
                   const std::string& query = "limit=50") {
    return api->Handle(HttpRequest{"GET", "/api/v1/worklist?" + query, "", "", accept_encoding}, who);
  }
  // The answer's text, inflated when it came in gzip (and it must when asked for).
  std::string Text(const HttpResponse& r, bool gzip) {
    REQUIRE(r.status == 200);
    if (!gzip) {
      CHECK(r.content_encoding.empty());
      return r.body;
    }
    REQUIRE(r.content_encoding == "gzip");
    Result<std::string> text = Gunzip(r.body, size_t{1} << 24);
    INFO(text.status().message());
    REQUIRE(text.ok());
    return text.value();
  }
  int64_t Kept() {
    const std::string metrics = api->Handle(HttpRequest{"GET", "/metrics", "", ""}, kWang).body;
    const std::string name = "\nteleread_worklist_pages_kept_total ";
    const size_t at = metrics.find(name);
    REQUIRE(at != std::string::npos);
    return std::stoll(metrics.substr(at + name.size()));
  }
  // The "items" array's text as the answer carries it.
  static std::string Items(const std::string& text) {
    const size_t from = text.find("\"items\":");
    const size_t to = text.rfind(",\"limit\":");
    REQUIRE(from != std::string::npos);
    REQUIRE(to != std::string::npos);
    return text.substr(from + 8, to - from - 8);
  }
  bool Lists(const json& page, const ReceivedStudy& study) {
    for (const json& row : page["items"]) {
      if (row["study_instance_uid"] == study.study_instance_uid) return true;
    }
    return false;
  }
};

}  // namespace

TEST_CASE_METHOD(GzipFixture,
                 "readers routed alike share a kept page's gzip bytes, each with their own critical reminders",
                 "[workflow][api][worklist][gzip]") {
  const std::string wang_text = Text(Get(kWang, "gzip, deflate"), true);
  const json wang = json::parse(wang_text);
  REQUIRE(wang["items"].size() == 1);
  CHECK(Lists(wang, first));
  REQUIRE(wang["critical_unacknowledged"].size() == 1);  // the signer's own reminder
  CHECK(wang["critical_unacknowledged"][0]["report_sop_instance_uid"] == critical_sop);
  CHECK(wang["limit"] == 50);

  int64_t kept = Kept();
  const json chen = json::parse(Text(Get(kChen, "gzip"), true));
  CHECK(Kept() == kept + 1);  // served from wang.li's read: the same compressed items
  CHECK(chen["items"] == wang["items"]);
  CHECK(chen["critical_unacknowledged"].empty());  // not wang.li's reminder

  // Plain JSON for a caller that does not ask for gzip: the same text, byte for byte.
  CHECK(Text(Get(kWang, ""), false) == wang_text);
  CHECK(Text(Get(kWang, "gzip;q=0"), false) == wang_text);

  // Routed otherwise: zhao.min's own page, never the bytes kept for wang.li's routing.
  kept = Kept();
  const json zhao = json::parse(Text(Get(kZhao, "gzip"), true));
  CHECK(Kept() == kept);
  CHECK(zhao["items"].size() == 2);
  CHECK(Lists(zhao, ecg));
  CHECK_FALSE(Lists(wang, ecg));
  CHECK(zhao["critical_unacknowledged"].empty());

  CHECK(Count("audit_log", "action = 'list-worklist' AND actor = 'wang.li'") == 3);
  CHECK(Count("audit_log", "action = 'list-worklist' AND actor = 'chen.jie'") == 1);
  CHECK(Count("audit_log", "action = 'list-worklist' AND actor = 'zhao.min'") == 1);
}

TEST_CASE_METHOD(GzipFixture, "a reader whose view cannot be audited gets no gzip page, even one kept for another",
                 "[workflow][api][worklist][gzip][audit]") {
  REQUIRE(json::parse(Text(Get(kWang, "gzip"), true))["items"].size() == 1);  // kept now
  REQUIRE(index
              ->Write([](Database& db) {
                return db.Exec(
                    "CREATE TRIGGER refuse_chen BEFORE INSERT ON audit_log WHEN NEW.actor = 'chen.jie' "
                    "BEGIN SELECT RAISE(ABORT, 'audit refused'); END");
              })
              .ok());
  const int64_t kept = Kept();
  const HttpResponse refused = Get(kChen, "gzip");
  CHECK(Kept() == kept + 1);     // the kept page was found...
  CHECK(refused.status >= 500);  // ...and not sent
  CHECK(refused.content_encoding.empty());
  CHECK(refused.body.find("Test^P1") == std::string::npos);
  CHECK(refused.body.find(first.study_instance_uid) == std::string::npos);
  CHECK(Count("audit_log", "action = 'list-worklist' AND actor = 'chen.jie'") == 0);
}

TEST_CASE_METHOD(GzipFixture, "a page kept from a plain caller is deflated for the first gzip caller and shared",
                 "[workflow][api][worklist][gzip]") {
  const HttpResponse plain = Get(kWang, "");
  const std::string plain_text = Text(plain, false);
  CHECK(plain.vary == "Accept-Encoding");  // plain too: a cache must not hand it to a gzip caller
  const int64_t kept = Kept();
  const HttpResponse wang = Get(kWang, "gzip");
  const HttpResponse chen = Get(kChen, "gzip");
  CHECK(Kept() == kept + 2);  // both from the page the plain caller read
  CHECK(wang.vary == "Accept-Encoding");
  CHECK(Text(wang, true) == plain_text);
  // The page's deflated items, byte for byte, in both answers: made once, not per caller.
  const DeflatedPart items = DeflatePart(Items(plain_text));
  REQUIRE(items.blocks.size() > 100);
  CHECK(wang.body.find(items.blocks) != std::string::npos);
  CHECK(chen.body.find(items.blocks) != std::string::npos);
  const json chen_json = json::parse(Text(chen, true));
  CHECK(chen_json["items"] == json::parse(plain_text)["items"]);
  CHECK(chen_json["critical_unacknowledged"].empty());
}

TEST_CASE_METHOD(GzipFixture, "pages that are not kept come in gzip too, with the caller's limit and offset as used",
                 "[workflow][api][worklist][gzip]") {
  const int64_t kept = Kept();
  for (const char* query : {"limit=50&offset=50", "state=waiting", "mine=1", "limit=50&offset=1"}) {
    INFO(query);
    const std::string gzip = Text(Get(kWang, "gzip", query), true);
    CHECK(gzip == Text(Get(kWang, "", query), false));
    CHECK(json::parse(gzip)["critical_unacknowledged"].size() == 1);
  }
  CHECK(Kept() == kept);  // none of them kept
  CHECK(json::parse(Text(Get(kWang, "gzip", "state=waiting"), true))["items"].size() == 1);
  CHECK(json::parse(Text(Get(kWang, "gzip", "limit=50&offset=1"), true))["items"].empty());
  // The limit and offset the page was read with, not the raw ones asked for.
  const json seven = json::parse(Text(Get(kWang, "gzip", "limit=7&offset=2"), true));
  CHECK(seven["limit"] == 7);
  CHECK(seven["offset"] == 2);
  const json clamped = json::parse(Text(Get(kWang, "gzip", "limit=5000&offset=-3"), true));
  CHECK(clamped["limit"] == 1000);
  CHECK(clamped["offset"] == 0);
  CHECK(clamped["items"].size() == 1);
  CHECK(json::parse(Text(Get(kWang, "", "limit=0"), false))["limit"] == 1);
}

TEST_CASE_METHOD(GzipFixture, "an admin's gzip worklist carries no critical reminders",
                 "[workflow][api][worklist][gzip]") {
  const json admin = json::parse(Text(Get(kAdmin, "gzip"), true));
  CHECK_FALSE(admin.contains("critical_unacknowledged"));
  CHECK(admin["items"].size() == 2);
  CHECK(admin["limit"] == 50);
  CHECK(Text(Get(kAdmin, "gzip"), true) == Text(Get(kAdmin, ""), false));
}

TEST_CASE_METHOD(GzipFixture, "a reader whose critical results cannot be listed gets no worklist, not an empty list",
                 "[workflow][api][worklist][gzip][critical]") {
  REQUIRE(json::parse(Text(Get(kWang, "gzip"), true))["critical_unacknowledged"].size() == 1);
  const int64_t audited = Count("audit_log", "action = 'list-worklist' AND actor = 'wang.li'");
  REQUIRE(index->Write([](Database& db) { return db.Exec("ALTER TABLE critical_results RENAME TO hidden"); }).ok());
  // A change from outside the server moves no version: the kept list is read again once expired.
  now_ms += CriticalResults::kKeptMs;
  for (const char* accept : {"gzip", ""}) {
    const HttpResponse r = Get(kWang, accept);
    CHECK(r.status == 503);
    CHECK(r.content_encoding.empty());
    CHECK(r.body.find("critical") != std::string::npos);
    CHECK(r.body.find(first.study_instance_uid) == std::string::npos);
  }
  CHECK(Count("audit_log", "action = 'list-worklist' AND actor = 'wang.li'") == audited);   // nothing shown
  CHECK(Text(Get(kAdmin, ""), false).find(first.study_instance_uid) != std::string::npos);  // no reminders: served
}
