// Two member hospitals storing into one study: an object kept in the index is checked for a
// foreign study only by its index write (no read before it), so the study's owner is decided
// there, whatever the order the writes reach the writer in; a sender whose write failed for
// another reason is still told 0x0124 when the study is another member's.
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcuid.h"

#include <future>

#include "samples/synthetic.h"
#include "server/reading/ingest.h"
#include "server/store/sqlite.h"
#include "tests/support/process.h"
#include "tests/support/stored.h"

using namespace teleread;

namespace {

// Holds the index writer inside a write of its own: what queues meanwhile is its next batch.
class HeldWriter {
 public:
  explicit HeldWriter(Index& index) {
    std::shared_future<void> released = release_.get_future().share();
    held_ = index.WriteAsync([this, released](Database&) {
      holding_.set_value();
      released.wait();
      return Status::Ok();
    });
  }
  ~HeldWriter() {
    if (!released_) (void)Release();
  }
  void WaitHolding() { holding_.get_future().wait(); }
  Status Release() {
    released_ = true;
    release_.set_value();
    return held_.get();
  }

 private:
  std::promise<void> release_, holding_;
  std::future<Status> held_;
  bool released_ = false;
};

struct OwnerFixture {
  test::ScratchDir dir;
  ObjectStore store{dir.path() / "storage"};
  std::unique_ptr<Index> index;
  std::unique_ptr<Ingest> ingest;
  std::vector<std::filesystem::path> study;  // CT slices of one new study

  OwnerFixture() {
    InitializeDicom();
    REQUIRE(store.Prepare().ok());
    auto opened = Index::Open(dir.path() / "storage" / "index.sqlite");
    REQUIRE(opened.ok());
    index = std::move(opened.value());
    store.UseIndex(index.get());
    ingest = std::make_unique<Ingest>(store, *index, [] { return int64_t{1'800'000'000'000}; });
    samples::SeriesSpec spec;
    spec.patient_name = "Zhang^Wei";
    spec.patient_id = "ZZ9";
    spec.modality = "CT";
    spec.instances = 3;
    spec.rows = spec.columns = 32;
    auto files = samples::WriteSeries(spec, dir.path() / "in");
    REQUIRE(files.ok());
    study = files.value();
    // Two slices whose stores do not wait for each other's SOP lock stripe (they would not both
    // reach the writer before either commits).
    if (Stripe(study[1]) == Stripe(study[0])) study.erase(study.begin() + 1);
    REQUIRE(Stripe(study[1]) != Stripe(study[0]));
  }

  static size_t Stripe(const std::filesystem::path& file) {
    return Ingest::SopLockStripe(ReadInstanceSummary(file)->sop_instance_uid);
  }

  // Stored on a thread of its own, queued at the writer once `queued` writes wait there.
  std::future<StoreOutcome> StoreAsync(const std::filesystem::path& file, const std::string& member, size_t queued) {
    std::filesystem::path temp = store.NewTempPath();
    std::filesystem::copy_file(file, temp);
    StoreRequest req{temp, "AE", member, UID_CTImageStorage, ReadInstanceSummary(file)->sop_instance_uid, {}, {}};
    auto out = std::async(std::launch::async, [this, req] { return ingest->Store(req); });
    // Not REQUIRE: the writer must be released for `out` to finish.
    CHECK(test::WaitFor([&] { return index->QueuedWrites() == queued; }));
    return out;
  }

  int64_t Instances() { return index->Counts().value().instances; }
  size_t Objects() { return test::StoredObjectCount(dir.path() / "storage"); }
};

}  // namespace

TEST_CASE_METHOD(OwnerFixture,
                 "two members store into one new study at once: the first written is stored, the other 0x0124",
                 "[ingest][concurrency]") {
  // Both tiers: a file is also checked before it is placed, but the study is not indexed yet.
  store.set_small_object_bytes(GENERATE(uint64_t{0}, ObjectStore::kDefaultSmallObjectBytes));
  std::future<StoreOutcome> first, second;
  SECTION("in one batch") {
    HeldWriter held(*index);
    held.WaitHolding();
    first = StoreAsync(study[0], "zhuozhou", 1);
    second = StoreAsync(study[1], "laishui", 2);
    REQUIRE(held.Release().ok());
  }
  SECTION("in two batches, the second queued before the first commits") {
    HeldWriter held(*index);
    held.WaitHolding();
    first = StoreAsync(study[0], "zhuozhou", 1);
    HeldWriter behind_first(*index);  // in the first one's batch: its rows written, not committed
    REQUIRE(test::WaitFor([&] { return index->QueuedWrites() == 2; }));
    REQUIRE(held.Release().ok());
    behind_first.WaitHolding();
    second = StoreAsync(study[1], "laishui", 1);
    REQUIRE(behind_first.Release().ok());
  }
  const StoreOutcome a = first.get(), b = second.get();
  CHECK(a.code == IngestCode::kStored);
  CHECK(b.code == IngestCode::kNotAuthorized);
  CHECK_THAT(b.error_comment, Catch::Contains("another member"));
  CHECK(Instances() == 1);
  CHECK(Objects() == 1);
  auto found = index->FindInstance(ReadInstanceSummary(study[0])->sop_instance_uid);
  REQUIRE(found.has_value());
  CHECK(found->member_id == "zhuozhou");
}

TEST_CASE_METHOD(OwnerFixture, "another member's object whose batch is lost is refused 0x0124, not 0xA700",
                 "[ingest][concurrency]") {
  store.set_small_object_bytes(ObjectStore::kDefaultSmallObjectBytes);  // no check before the write
  std::filesystem::path temp = store.NewTempPath();
  std::filesystem::copy_file(study[0], temp);
  const std::string sop = ReadInstanceSummary(study[0])->sop_instance_uid;
  REQUIRE(ingest->Store({temp, "AE", "zhuozhou", UID_CTImageStorage, sop, {}, {}}).code == IngestCode::kStored);

  HeldWriter held(*index);
  held.WaitHolding();
  // First in the next batch: SQLite rolls the whole transaction back under it (a full disk).
  std::future<Status> neighbour = index->WriteAsync([](Database& db) {
    (void)db.Exec("ROLLBACK");
    return Status::NoSpace("database or disk is full");
  });
  REQUIRE(test::WaitFor([&] { return index->QueuedWrites() == 1; }));
  std::future<StoreOutcome> foreign = StoreAsync(study[1], "laishui", 2);
  REQUIRE(held.Release().ok());
  CHECK(neighbour.get().code() == Status::Code::kNoSpace);
  const StoreOutcome out = foreign.get();
  CHECK(out.code == IngestCode::kNotAuthorized);
  CHECK_THAT(out.error_comment, Catch::Contains("another member"));
  CHECK(Instances() == 1);
  CHECK(Objects() == 1);
}

TEST_CASE_METHOD(OwnerFixture,
                 "the index write refuses another member's study as PermissionDenied, a stored UID as Conflict",
                 "[ingest]") {
  std::filesystem::path temp = store.NewTempPath();
  std::filesystem::copy_file(study[0], temp);
  const InstanceSummary first = ReadInstanceSummary(study[0]).value();
  REQUIRE(ingest->Store({temp, "AE", "zhuozhou", UID_CTImageStorage, first.sop_instance_uid, {}, {}}).code ==
          IngestCode::kStored);
  auto add = [&](const InstanceSummary& s, const std::string& member) {
    return index->AddInstance({s, member, "AE", ObjectStore::InIndexPathFor(s.sop_instance_uid), 4, 1, "DICM"});
  };
  const InstanceSummary second = ReadInstanceSummary(study[1]).value();
  // Ingest answers PermissionDenied 0x0124 without reading the owner again; Conflict is a re-send.
  CHECK(add(second, "laishui").code() == Status::Code::kPermissionDenied);
  CHECK(add(first, "laishui").code() == Status::Code::kPermissionDenied);  // the study is checked first
  CHECK(add(first, "zhuozhou").code() == Status::Code::kConflict);
  CHECK(Instances() == 1);
}

TEST_CASE_METHOD(OwnerFixture, "a study's owner is unknown before its first row and known from then on", "[ingest]") {
  const std::string study_uid = ReadInstanceSummary(study[0])->study_instance_uid;
  CHECK_FALSE(index->StudyOwner(study_uid).has_value());  // asked before it arrives: not kept as unknown
  store.set_small_object_bytes(0);                        // files, each checked against the owner first
  std::filesystem::path temp = store.NewTempPath();
  std::filesystem::copy_file(study[0], temp);
  REQUIRE(
      ingest
          ->Store({temp, "AE", "zhuozhou", UID_CTImageStorage, ReadInstanceSummary(study[0])->sop_instance_uid, {}, {}})
          .code == IngestCode::kStored);
  CHECK(index->StudyOwner(study_uid) == std::optional<std::string>("zhuozhou"));
  {  // Kept: not read again (nothing but this test changes an owner in the index).
    auto other = Database::Open(dir.path() / "storage" / "index.sqlite", false);
    REQUIRE(other.ok());
    REQUIRE(other.value()->Exec("UPDATE studies SET member_id = 'changed-behind-its-back'").ok());
  }
  CHECK(index->StudyOwner(study_uid) == std::optional<std::string>("zhuozhou"));
  temp = store.NewTempPath();
  std::filesystem::copy_file(study[1], temp);
  const StoreOutcome foreign = ingest->Store(
      {temp, "AE", "laishui", UID_CTImageStorage, ReadInstanceSummary(study[1])->sop_instance_uid, {}, {}});
  CHECK(foreign.code == IngestCode::kNotAuthorized);
  CHECK(Instances() == 1);
}
