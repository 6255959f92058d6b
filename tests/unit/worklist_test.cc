// The worklist without a socket: ordering, leases, filters and the audit of each change.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "tests/unit/workflow_fixture.h"

using namespace teleread;
using teleread::test::ReceivedStudy;
using teleread::test::WorkflowFixture;

namespace {

std::vector<std::string> Uids(const std::vector<WorklistRow>& rows) {
  std::vector<std::string> uids;
  for (const WorklistRow& r : rows) uids.push_back(r.study_instance_uid);
  return uids;
}

}  // namespace

TEST_CASE_METHOD(WorkflowFixture, "the worklist lists STAT before HIGH before ROUTINE, then by due time",
                 "[workflow][worklist]") {
  const ReceivedStudy routine_early = Receive("zhuozhou", "P1", "CT", "ROUTINE");
  Promote();
  now_ms += 60'000;  // the second routine study is complete later, so due later
  const ReceivedStudy routine_late = Receive("laishui", "P2", "CT", "ROUTINE");
  const ReceivedStudy high = Receive("yixian", "P3", "MR", "HIGH");
  const ReceivedStudy stat = Receive("zhuozhou", "P4", "CT", "STAT");
  Promote();

  Result<std::vector<WorklistRow>> rows = worklist->List({});
  REQUIRE(rows.ok());
  CHECK(Uids(rows.value()) == std::vector<std::string>{stat.study_instance_uid, high.study_instance_uid,
                                                       routine_early.study_instance_uid,
                                                       routine_late.study_instance_uid});
  CHECK(rows.value()[0].priority == "STAT");
  CHECK(rows.value()[2].due_ms < rows.value()[3].due_ms);
  // The patient is named on every row, as the member sent it.
  CHECK(rows.value()[0].patient_name == "Test^P4");
  CHECK(rows.value()[0].patient_id == "P4");

  WorklistFilter mr;
  mr.modality = "MR";
  CHECK(Uids(worklist->List(mr).value()) == std::vector<std::string>{high.study_instance_uid});
  WorklistFilter laishui;
  laishui.member_id = "laishui";
  CHECK(Uids(worklist->List(laishui).value()) == std::vector<std::string>{routine_late.study_instance_uid});
  WorklistFilter paged;
  paged.limit = 2;
  paged.offset = 2;
  CHECK(Uids(worklist->List(paged).value()) ==
        std::vector<std::string>{routine_early.study_instance_uid, routine_late.study_instance_uid});
}

TEST_CASE_METHOD(WorkflowFixture, "a claim holds until its lease ends, renewals extend it, and each change is audited",
                 "[workflow][worklist][claim]") {
  const std::string uid = Receive("zhuozhou", "P1", "CT").study_instance_uid;
  Promote();
  const int64_t lease = int64_t{config.reading.lease_minutes} * 60'000;

  Result<WorklistRow> a = worklist->Claim(uid, "wang.li");
  REQUIRE(a.ok());
  CHECK(a->lease_expires_ms == now_ms + lease);
  Result<WorklistRow> b = worklist->Claim(uid, "zhao.min");
  REQUIRE_FALSE(b.ok());
  CHECK(b.status().code() == Status::Code::kConflict);
  CHECK(b.status().message() == "wang.li");
  CHECK(worklist->Release(uid, "zhao.min").code() == Status::Code::kConflict);

  now_ms += lease / 2;
  Result<WorklistRow> renewed = worklist->Renew(uid, "wang.li");
  REQUIRE(renewed.ok());
  CHECK(renewed->lease_expires_ms == now_ms + lease);
  CHECK(worklist->Renew(uid, "zhao.min").status().code() == Status::Code::kConflict);

  now_ms += lease;  // gone quiet: the claim has lapsed, the study reads as waiting at once
  CHECK(worklist->Task(uid)->state == "waiting");
  CHECK(worklist->Renew(uid, "wang.li").status().code() == Status::Code::kConflict);
  CHECK(worklist->ExpireLeases().value() == 1);
  CHECK(worklist->ExpireLeases().value() == 0);
  REQUIRE(worklist->Claim(uid, "zhao.min").ok());
  CHECK(worklist->Release(uid, "zhao.min").ok());
  CHECK(worklist->Task(uid)->state == "waiting");

  Result<WorklistRow> given = worklist->Reassign(uid, "wang.li", "chief");
  REQUIRE(given.ok());
  CHECK(given->claimed_by == "wang.li");
  CHECK(worklist->Claim("1.2.3.999", "zhao.min").status().code() == Status::Code::kNotFound);

  CHECK(Count("audit_log", "action = 'claim' AND actor = 'wang.li'") == 1);
  CHECK(Count("audit_log", "action = 'claim' AND actor = 'zhao.min'") == 1);
  CHECK(Count("audit_log", "action = 'release' AND actor = 'zhao.min'") == 1);
  CHECK(Count("audit_log", "action = 'reassign' AND actor = 'chief' AND detail = 'wang.li'") == 1);
}

TEST_CASE_METHOD(WorkflowFixture, "of many claims at once exactly one wins", "[workflow][worklist][claim]") {
  const std::string uid = Receive("zhuozhou", "P1", "CT").study_instance_uid;
  Promote();
  std::vector<std::thread> threads;
  std::atomic<int> won{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] { won += worklist->Claim(uid, i % 2 ? "wang.li" : "zhao.min").ok() ? 1 : 0; });
  }
  for (std::thread& t : threads) t.join();
  // The winner may claim again (its own claim), the other never.
  const std::string holder = worklist->Task(uid)->claimed_by;
  CHECK((holder == "wang.li" || holder == "zhao.min"));
  CHECK(won == 4);
  CHECK(Count("audit_log", "action = 'claim' AND actor = '" + holder + "'") == 4);
  CHECK(Count("audit_log", "action = 'claim'") == 4);
}
