// The reader's unacknowledged critical results in every worklist answer: kept per signer by the
// critical results' version (server/reading/critical_results.h), never stale: a result opened or
// acknowledged shows in the very next answer, even when no task row changed with it; escalations
// and webhook attempts end neither the kept reminders nor the kept worklist pages; a change from
// outside the server shows once the kept list expires.
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

int64_t Metric(ReadingApi& api, const std::string& name) { return test::Metric(api, name, kWang); }

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
                  return OpenCriticalResult(db, sop, q.Int(0), study.study_instance_uid, "zhuozhou", signer, true,
                                            now_ms);
                })
                .ok());
    index->CriticalResultsChanged();  // as the report desk does after the report's write
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
  // Opened a second short of escalating: the time moves on within the kept list's expiry.
  const int64_t ack_ms = int64_t{config.reading.critical_ack_minutes} * 60'000;
  now_ms -= ack_ms - 1000;
  Open("2.25.911", "wang.li");
  now_ms += ack_ms - 1000;
  auto escalated = [&] {
    const HttpResponse r = api->Handle(HttpRequest{"GET", "/api/v1/worklist?limit=50", "", ""}, kWang);
    REQUIRE(r.status == 200);
    return json::parse(r.body)["critical_unacknowledged"].at(0)["escalated"].get<bool>();
  };
  CHECK_FALSE(escalated());
  const size_t reads = critical->unacknowledged_reads();
  now_ms += 1000;
  CHECK(escalated());
  CHECK(critical->unacknowledged_reads() == reads);
}

TEST_CASE_METHOD(ReminderFixture, "webhook attempts and escalations end neither kept reminders nor kept pages",
                 "[workflow][api][worklist][critical]") {
  Open("2.25.921", "wang.li");
  REQUIRE(Reminders(kWang) == std::vector<std::string>{"2.25.921"});
  const size_t reads = critical->unacknowledged_reads();
  const int64_t kept = Metric(*api, "teleread_worklist_pages_kept_total");
  // The member's HIS is down: each retry writes the row (attempts, error, next time).
  Result<std::vector<CriticalResult>> open = stores->critical.List(CriticalQuery{"", "wang.li", "unacknowledged", 10});
  REQUIRE(open.ok());
  REQUIRE(open->size() == 1);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(stores->critical.WebhookAttempted(open->at(0).id, "connection refused", false, now_ms + 1000, now_ms).ok());
  }
  // Escalated by the store directly: the clock stays, so that the kept page stays current.
  Result<std::vector<CriticalResult>> escalated = stores->critical.Escalate(now_ms, now_ms);
  REQUIRE(escalated.ok());
  REQUIRE(escalated->size() == 1);
  CHECK(Reminders(kWang) == std::vector<std::string>{"2.25.921"});
  CHECK(critical->unacknowledged_reads() == reads);
  CHECK(Metric(*api, "teleread_worklist_pages_kept_total") == kept + 1);
}

TEST_CASE_METHOD(ReminderFixture, "a change from outside the server shows once the kept reminders expire",
                 "[workflow][api][worklist][critical]") {
  Open("2.25.931", "wang.li");
  REQUIRE(Reminders(kWang) == std::vector<std::string>{"2.25.931"});
  // As an operator's sqlite3 would: no version moves.
  REQUIRE(index->Write([](Database& db) { return db.Exec("UPDATE critical_results SET acknowledged_ms = 1"); }).ok());
  now_ms += CriticalResults::kKeptMs - 1;
  CHECK(Reminders(kWang) == std::vector<std::string>{"2.25.931"});  // kept, as documented
  now_ms += 1;
  CHECK(Reminders(kWang).empty());
}
