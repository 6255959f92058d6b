// Routing and claim rules of the worklist, on a real index with a clock the test moves.
#include <catch2/catch.hpp>
#include <set>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcuid.h"

#include "samples/synthetic.h"
#include "server/reading/ingest.h"
#include "server/reading/worklist.h"
#include "server/store/sqlite.h"
#include "server/store/stores.h"
#include "tests/support/process.h"

using namespace teleread;

namespace {

struct RoutingFixture {
  test::ScratchDir dir;
  ObjectStore store{dir.path() / "storage"};
  std::unique_ptr<Index> index;
  int64_t now_ms = 1'800'000'000'000;
  std::unique_ptr<Ingest> ingest;
  std::unique_ptr<Stores> stores;
  std::string ct, us;  // a CT study from zhuozhou, an ultrasound study from laishui

  RoutingFixture() {
    InitializeDicom();
    REQUIRE(store.Prepare().ok());
    auto opened = Index::Open(dir.path() / "storage" / "index.sqlite");
    REQUIRE(opened.ok());
    index = std::move(opened.value());
    store.UseIndex(index.get());
    ingest = std::make_unique<Ingest>(store, *index, [this] { return now_ms; });
    stores = std::make_unique<Stores>(*index, [this] { return now_ms; });
    ct = Push("CT", UID_CTImageStorage, "zhuozhou");
    us = Push("US", UID_UltrasoundImageStorage, "laishui");
    REQUIRE(index->PromoteQuietStudies(now_ms + 1000, 1000).value() == 2);
  }

  std::string Push(const std::string& modality, const char* sop_class, const std::string& member) {
    samples::SeriesSpec spec;
    spec.patient_id = member + modality;
    spec.modality = modality;
    spec.instances = 1;
    spec.rows = spec.columns = 16;
    auto files = samples::WriteSeries(spec, dir.path() / ("in-" + modality));
    REQUIRE(files.ok());
    const std::filesystem::path temp = store.NewTempPath();
    std::filesystem::copy_file(files.value()[0], temp);
    auto summary = ReadInstanceSummary(files.value()[0]);
    REQUIRE(summary.ok());
    REQUIRE(ingest->Store({temp, "AE", member, sop_class, summary->sop_instance_uid, {}, {}}).code ==
            IngestCode::kStored);
    return summary->study_instance_uid;
  }

  Worklist Make(std::vector<Radiologist> readers) {
    return Worklist(
        stores->tasks, stores->audit, 60'000, [this] { return now_ms; }, std::move(readers));
  }
};

Radiologist Reader(std::string id, std::vector<std::string> modalities, std::vector<std::string> members = {}) {
  Radiologist r;
  r.id = std::move(id);
  r.modalities = std::move(modalities);
  r.members = std::move(members);
  return r;
}

}  // namespace

TEST_CASE_METHOD(RoutingFixture, "a reader sees and claims only their modalities and members", "[tasks][routing]") {
  Worklist w =
      Make({Reader("wang.li", {"CT", "MR"}), Reader("liu.xin", {"ECG"}), Reader("chen.jing", {}, {"laishui"})});
  REQUIRE(w.List({}, "wang.li").value().size() == 1);
  CHECK(w.List({}, "wang.li").value()[0].study_instance_uid == ct);
  CHECK(w.List({}, "liu.xin").value().empty());
  REQUIRE(w.List({}, "chen.jing").value().size() == 1);
  CHECK(w.List({}, "chen.jing").value()[0].study_instance_uid == us);
  CHECK(w.List({}, "ops").value().size() == 2);  // no reader: an admin sees everything

  Result<WorklistRow> refused = w.Claim(us, "wang.li");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == Status::Code::kPermissionDenied);
  CHECK(refused.status().message() == "wang.li reads CT, MR; this study is US");
  CHECK(w.Claim(ct, "chen.jing").status().message() == "chen.jing reads studies of laishui, not of zhuozhou");
  // Each refusal is audited with its reason, and the task is left waiting.
  auto refusals = [&] {
    std::vector<StoredAuditEntry> found;
    REQUIRE(ForEachAuditEntry(dir.path() / "storage" / "index.sqlite", [&](const StoredAuditEntry& e) {
              if (e.entry.action == "claim-refused") found.push_back(e);
            }).ok());
    return found;
  };
  REQUIRE(refusals().size() == 2);
  CHECK(refusals()[0].entry.actor == "wang.li");
  CHECK(refusals()[0].entry.study_instance_uid == us);
  CHECK(refusals()[0].entry.detail == "wang.li reads CT, MR; this study is US");
  CHECK(refusals()[1].entry.actor == "chen.jing");
  CHECK(refusals()[1].entry.study_instance_uid == ct);
  CHECK(refusals()[1].entry.detail == "chen.jing reads studies of laishui, not of zhuozhou");
  CHECK(w.Task(us).value().state == "waiting");
  CHECK(w.Task(ct).value().state == "waiting");
  // A study still arriving has no task yet: not found and not refused.
  const std::string arriving = Push("US", UID_UltrasoundImageStorage, "zhuozhou");
  CHECK(w.Claim(arriving, "wang.li").status().code() == Status::Code::kNotFound);
  CHECK(w.Claim("1.2.3.999", "wang.li").status().code() == Status::Code::kNotFound);
  CHECK(refusals().size() == 2);
  // The claim answers with the task as its transaction left it: as a read after it shows it.
  Result<WorklistRow> claimed = w.Claim(ct, "wang.li");
  REQUIRE(claimed.ok());
  CHECK(claimed->study_instance_uid == ct);
  CHECK(claimed->state == "claimed");
  CHECK(claimed->claimed_by == "wang.li");
  CHECK(claimed->claimed_ms == now_ms);
  CHECK(claimed->lease_expires_ms == now_ms + 60'000);
  CHECK(claimed->member_id == "zhuozhou");
  CHECK(claimed->patient_id == "zhuozhouCT");
  const WorklistRow after = w.Task(ct).value();
  CHECK(claimed->patient_name == after.patient_name);
  CHECK(claimed->modalities == after.modalities);
  CHECK(claimed->reads_differently_ms == after.reads_differently_ms);

  // An admin still assigns anyone anything, and the assignee sees it among their claims.
  REQUIRE(w.Reassign(us, "liu.xin", "ops").ok());
  WorklistFilter mine;
  mine.claimed_by = "liu.xin";
  CHECK(w.List(mine, "liu.xin").value().size() == 1);
  CHECK(w.Unroutable().value().empty());
}

TEST_CASE_METHOD(RoutingFixture, "a study that no configured reader can take is flagged", "[tasks][routing]") {
  Worklist w = Make({Reader("wang.li", {"CT"}), Reader("liu.xin", {"ECG"})});
  auto unroutable = w.Unroutable();
  REQUIRE(unroutable.ok());
  REQUIRE(unroutable->size() == 1);
  CHECK(unroutable->front().study_instance_uid == us);
  CHECK(w.FlagUnroutable() == 1);
  CHECK(Make({}).Unroutable().value().empty());  // no readers configured: routing is off
}

TEST_CASE_METHOD(RoutingFixture, "every open task of a member and modality nobody reads is flagged, no other",
                 "[tasks][routing]") {
  const std::string us2 = Push("US", UID_UltrasoundImageStorage, "laishui");  // laishui US again
  const std::string us3 = Push("US", UID_UltrasoundImageStorage, "zhuozhou");
  REQUIRE(index->PromoteQuietStudies(now_ms + 1000, 1000).value() == 2);
  // US read for zhuozhou only; CT for everyone: laishui's two US studies are nobody's.
  Worklist w = Make({Reader("wang.li", {"CT"}), Reader("liu.xin", {"US"}, {"zhuozhou"})});
  REQUIRE(w.Reassign(us2, "liu.xin", "ops").ok());  // claimed, still open
  auto unroutable = w.Unroutable();
  REQUIRE(unroutable.ok());
  std::set<std::string> uids;
  for (const WorklistRow& r : unroutable.value()) uids.insert(r.study_instance_uid);
  CHECK(uids == std::set<std::string>{us, us2});
  CHECK(unroutable->size() == 2);
  CHECK(w.FlagUnroutable() == 2);
  CHECK(Make({Reader("wang.li", {"CT", "US"})}).Unroutable().value().empty());
}

TEST_CASE_METHOD(RoutingFixture, "an expired claim is named as such with its expiry time", "[tasks][claim]") {
  Worklist w = Make({});
  REQUIRE(w.Claim(ct, "wang.li").ok());
  const int64_t expiry = now_ms + 60'000;
  now_ms += 30'000;
  REQUIRE(w.Renew(ct, "wang.li").ok());  // renewing moves the expiry
  CHECK(w.Task(ct)->lease_expires_ms == now_ms + 60'000);
  now_ms = expiry + 30'000 + 1;
  Result<WorklistRow> late = w.Renew(ct, "wang.li");
  REQUIRE_FALSE(late.ok());
  CHECK(late.status().code() == Status::Code::kConflict);
  CHECK(late.status().message() == ExpiredClaimMessage(expiry + 30'000));
  CHECK_THAT(late.status().message(),
             Catch::StartsWith("your claim expired at 2027-01-15 ") && Catch::EndsWith(" UTC: claim the study again"));
  // Still named after the expiry sweep has cleared the claim, but not for someone else.
  REQUIRE(w.ExpireLeases().value() == 1);
  CHECK(w.Renew(ct, "wang.li").status().message() == ExpiredClaimMessage(expiry + 30'000));
  CHECK(w.Renew(ct, "zhao.min").status().message() == "no live claim of yours on this study");
  REQUIRE(w.Claim(ct, "zhao.min").ok());
  CHECK(w.Renew(ct, "wang.li").status().message() == "the study is claimed by zhao.min");
}

TEST_CASE_METHOD(RoutingFixture, "a claim whose audit entry cannot be written is refused and changes nothing",
                 "[tasks][claim][audit]") {
  Worklist w = Make({Reader("wang.li", {"CT"})});
  const std::filesystem::path path = dir.path() / "storage" / "index.sqlite";
  auto db = Database::Open(path, false);
  REQUIRE(db.ok());
  REQUIRE(db.value()
              ->Exec("CREATE TRIGGER refuse BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'full'); END;")
              .ok());
  // Neither a refusal nor a claim stands without its entry (fail closed), and neither reads as a
  // conflict (SQLite's refusal is a constraint failure): the API's 503, not "claimed by".
  Result<WorklistRow> refused = w.Claim(us, "wang.li");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == Status::Code::kUnavailable);
  Result<WorklistRow> claimed = w.Claim(ct, "wang.li");
  REQUIRE_FALSE(claimed.ok());
  CHECK(claimed.status().code() == Status::Code::kUnavailable);
  CHECK(w.Renew(ct, "wang.li").status().code() == Status::Code::kConflict);  // nothing was claimed
  CHECK(w.Task(ct).value().state == "waiting");
  CHECK(w.Task(ct).value().claimed_by.empty());
  REQUIRE(db.value()->Exec("DROP TRIGGER refuse;").ok());
  CHECK(w.Claim(ct, "wang.li").ok());
  CHECK(w.Claim(us, "wang.li").status().code() == Status::Code::kPermissionDenied);
}
