// The reader's unacknowledged critical results in every worklist answer: kept per signer by the
// index version (server/reading/critical_results.h), never stale: a result opened or
// acknowledged shows in the very next answer, even when no task row changed with it.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "server/reading/critical_results.h"
#include "server/store/sqlite.h"
#include "tests/unit/workflow_fixture.h"

using namespace teleread;
using nlohmann::json;
using teleread::test::ReceivedStudy;
using teleread::test::WorkflowFixture;

namespace {

const PeerCertificate kWang = test::CentreCertificate("wang.li", "radiologist");
const PeerCertificate kZhao = test::CentreCertificate("zhao.min", "radiologist");

struct ReminderFixture : WorkflowFixture {
  ReceivedStudy study = Receive("zhuozhou", "P1", "CT");
  std::unique_ptr<CriticalResults> critical;

  ReminderFixture() {
    Promote();
    critical = std::make_unique<CriticalResults>(config, stores->critical, nullptr, [this] { return now_ms; });
    api = std::make_unique<ReadingApi>(config, *worklist, stores->reads, *store, std::vector<MetricsSource>{},
                                       desk.get(), outbox.get(), nullptr, critical.get());
  }
  // Opens a critical result of the study signed by `signer`: a write of critical_results (and
  // the audit) only, no task row.
  void Open(const std::string& sop, const std::string& signer) {
    REQUIRE(index
                ->Write([&](Database& db) {
                  Statement q(db.handle(), "SELECT id FROM studies WHERE study_instance_uid = ?1");
                  q.Bind(1, study.study_instance_uid);
                  if (Result<bool> row = q.Step(); !row.ok() || !row.value()) return Status::NotFound("study");
                  return OpenCriticalResult(db, sop, q.Int(0), study.study_instance_uid, "zhuozhou", signer, false,
                                            now_ms);
                })
                .ok());
  }
  // The report SOP UIDs of the reader's reminders, newest first.
  std::vector<std::string> Reminders(const PeerCertificate& who) {
    const HttpResponse r = api->Handle(HttpRequest{"GET", "/api/v1/worklist?limit=50", "", ""}, who);
    REQUIRE(r.status == 200);
    INFO(r.body);
    std::vector<std::string> out;
    const json page = json::parse(r.body);
    REQUIRE(page.contains("critical_unacknowledged"));
    for (const json& c : page["critical_unacknowledged"])
      out.push_back(c["report_sop_instance_uid"].get<std::string>());
    return out;
  }
};

}  // namespace

TEST_CASE_METHOD(ReminderFixture, "a critical result opened or acknowledged shows in the reader's very next worklist",
                 "[workflow][api][worklist][critical]") {
  Open("2.25.901", "wang.li");
  CHECK(Reminders(kWang) == std::vector<std::string>{"2.25.901"});
  const size_t reads = critical->unacknowledged_reads();
  CHECK(Reminders(kWang) == std::vector<std::string>{"2.25.901"});
  CHECK(critical->unacknowledged_reads() == reads);  // kept: nothing changed
  CHECK(Reminders(kZhao).empty());                   // per signer
  CHECK(Reminders(kWang) == std::vector<std::string>{"2.25.901"});

  // A second one of the same study: only critical_results changes, no task row.
  now_ms += 1000;
  Open("2.25.902", "wang.li");
  CHECK(Reminders(kWang) == (std::vector<std::string>{"2.25.902", "2.25.901"}));
  CHECK(Reminders(kZhao).empty());

  // The first acknowledgement marks the task too; the second changes critical_results alone.
  REQUIRE(critical->Acknowledge("2.25.901", "zhuozhou", "Li Hua", "zhuozhou").ok());
  CHECK(Reminders(kWang) == std::vector<std::string>{"2.25.902"});
  REQUIRE(critical->Acknowledge("2.25.902", "zhuozhou", "Li Hua", "zhuozhou").ok());
  CHECK(Reminders(kWang).empty());

  // Another reader's new result is theirs only, at once.
  Open("2.25.903", "zhao.min");
  CHECK(Reminders(kZhao) == std::vector<std::string>{"2.25.903"});
  CHECK(Reminders(kWang).empty());
}

TEST_CASE_METHOD(ReminderFixture, "a kept critical reminder escalates on time without a read",
                 "[workflow][api][worklist][critical]") {
  Open("2.25.911", "wang.li");
  auto escalated = [&] {
    const HttpResponse r = api->Handle(HttpRequest{"GET", "/api/v1/worklist?limit=50", "", ""}, kWang);
    REQUIRE(r.status == 200);
    return json::parse(r.body)["critical_unacknowledged"].at(0)["escalated"].get<bool>();
  };
  CHECK_FALSE(escalated());
  const size_t reads = critical->unacknowledged_reads();
  now_ms += int64_t{config.reading.critical_ack_minutes} * 60'000;
  CHECK(escalated());
  CHECK(critical->unacknowledged_reads() == reads);
}
