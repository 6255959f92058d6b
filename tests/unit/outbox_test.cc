// The delivery outbox's rules on a clock the test sets: backoff with jitter up to its cap,
// dead letters, the admin's retry, one try per failing member per round, and a re-send that
// asks first once an attempt may have reached the member.
#include <catch2/catch.hpp>

#include "server/store/sqlite.h"
#include "tests/unit/workflow_fixture.h"

using namespace teleread;
using teleread::test::ReceivedStudy;
using teleread::test::WorkflowFixture;

namespace {

struct OutboxFixture : WorkflowFixture {
  // A report of a new study from `member`, accepted and queued.
  std::string Reported(const std::string& member, const std::string& patient) {
    const ReceivedStudy study = Receive(member, patient, "CT");
    Promote();
    REQUIRE(worklist->Claim(study.study_instance_uid, "wang.li").ok());
    Result<AcceptedReport> r = desk->Accept(study.study_instance_uid, Bytes(SignedReport(study, "wang.li")), "wang.li");
    REQUIRE(r.ok());
    // These tests follow one row's schedule; the PDF copy's row keeps the same rules (its delivery
    // is tested end to end in report_pdf_test.cc), so it is taken out of their way.
    REQUIRE(index
                ->Write([&](Database& db) {
                  return db.Exec("DELETE FROM deliveries WHERE sop_instance_uid = '" + r->pdf_sop_instance_uid + "'");
                })
                .ok());
    return r->sop_instance_uid;
  }
  DeliveryRow Row(const std::string& sop) {
    Result<std::vector<DeliveryRow>> rows = outbox->List("", "", 100);
    INFO(rows.status().ToString());
    REQUIRE(rows.ok());
    for (const DeliveryRow& d : rows.value()) {
      if (d.sop_instance_uid == sop) return d;
    }
    FAIL("no delivery row for " << sop);
    return {};
  }
};

}  // namespace

TEST_CASE_METHOD(OutboxFixture, "failed deliveries back off exponentially with jitter up to the cap, then wait dead",
                 "[workflow][outbox]") {
  const std::string sop = Reported("zhuozhou", "P1");
  sender.fail_with = "refused with status 0xA700";
  // Base 10 s, doubling, capped at 40 s, each +-20%: attempts 1..4 wait 10, 20, 40, 40 s.
  const int64_t expected[] = {10'000, 20'000, 40'000, 40'000};
  for (int attempt = 1; attempt <= 4; ++attempt) {
    REQUIRE(outbox->RunRound().due == 1);
    const DeliveryRow row = Row(sop);
    CHECK(row.state == "pending");
    CHECK(row.attempts == attempt);
    CHECK(row.last_error == "refused with status 0xA700");
    const int64_t delay = row.next_attempt_ms - now_ms;
    INFO("attempt " << attempt << " waits " << delay << " ms");
    CHECK(delay >= expected[attempt - 1] * 8 / 10);
    CHECK(delay <= expected[attempt - 1] * 12 / 10);
    // Not due before its time.
    now_ms = row.next_attempt_ms - 1;
    CHECK(outbox->RunRound().due == 0);
    now_ms = row.next_attempt_ms;
  }
  REQUIRE(outbox->RunRound().due == 1);  // the fifth and last attempt
  DeliveryRow dead = Row(sop);
  CHECK(dead.state == "dead");
  CHECK(dead.attempts == 5);
  now_ms += 3'600'000;
  CHECK(outbox->RunRound().due == 0);
  CHECK(sender.calls.size() == 5);

  // An admin's retry: due at once, counted from zero; the member is asked first, since earlier
  // attempts began to send.
  REQUIRE(outbox->Retry(dead.id, "chief").ok());
  CHECK(Row(sop).attempts == 0);
  CHECK(Count("audit_log", "action = 'retry-delivery' AND actor = 'chief'") == 1);
  sender.fail_with.clear();
  REQUIRE(outbox->RunRound().due == 1);
  CHECK(Row(sop).state == "delivered");
  CHECK(Row(sop).delivered_ms == now_ms);
  CHECK(sender.calls.back().may_hold);
  CHECK(Count("audit_log", "action = 'deliver'") == 1);
  CHECK(outbox->Retry(dead.id, "chief").code() == Status::Code::kConflict);
  CHECK(outbox->Retry(12345, "chief").code() == Status::Code::kNotFound);
}

TEST_CASE_METHOD(OutboxFixture, "a member that is down is tried once per round and holds up no one else",
                 "[workflow][outbox]") {
  const std::string zz1 = Reported("zhuozhou", "P1");
  const std::string zz2 = Reported("zhuozhou", "P2");
  const std::string ls = Reported("laishui", "P3");
  sender.down = {"ZZ_PACS"};
  REQUIRE(outbox->RunRound().due == 3);
  int zz_calls = 0;
  for (const auto& c : sender.calls) zz_calls += c.member_ae == "ZZ_PACS";
  CHECK(zz_calls == 1);
  CHECK(Row(ls).state == "delivered");
  CHECK(Row(zz1).attempts + Row(zz2).attempts == 1);
  // A refused association sent nothing: the next attempt need not ask first.
  sender.down.clear();
  now_ms += 3'600'000;
  REQUIRE(outbox->RunRound().due == 2);
  CHECK(Row(zz1).state == "delivered");
  CHECK(Row(zz2).state == "delivered");
  for (const auto& c : sender.calls) CHECK_FALSE(c.may_hold);
}

TEST_CASE_METHOD(OutboxFixture, "an attempt that began to send makes the next one ask the member first",
                 "[workflow][outbox]") {
  const std::string sop = Reported("yixian", "P1");
  sender.fail_with = "the association was lost";
  REQUIRE(outbox->RunRound().due == 1);
  CHECK_FALSE(sender.calls.back().may_hold);
  CHECK(sender.calls.back().begun);
  CHECK(Row(sop).last_attempt_ms == now_ms);
  now_ms = Row(sop).next_attempt_ms;
  sender.fail_with.clear();
  REQUIRE(outbox->RunRound().due == 1);
  CHECK(sender.calls.back().may_hold);
  CHECK(Row(sop).state == "delivered");
}
