// A synced segment object's index row commits without the WAL's sync (Index::Durability::
// kRebuildable): a power cut can take the row, never the object, and start-up recovery indexes
// it again from its sealed trailer. Everything else still commits synced.
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcuid.h"

#include <chrono>
#include <thread>

#include "samples/synthetic.h"
#include "server/reading/ingest.h"
#include "server/reading/recovery.h"
#include "server/store/segment_trailer.h"
#include "server/store/sqlite.h"
#include "server/store/stores.h"
#include "server/store/wal_vfs.h"
#include "tests/support/process.h"
#include "tests/support/sealed_segment.h"

using namespace teleread;

namespace {

uint64_t WalSyncs() { return WalVfsCountersNow().wal_syncs; }

Index::WriteFn Insert(int x) {
  return [x](Database& db) { return db.Exec("INSERT INTO probe VALUES (" + std::to_string(x) + ")"); };
}

}  // namespace

TEST_CASE("only a batch of rebuildable writes commits without a WAL sync, and not for longer than the bound",
          "[store][index]") {
  test::ScratchDir dir;
  auto opened = Index::Open(dir.path() / "index.sqlite");
  REQUIRE(opened.ok());
  Index& index = *opened.value();
  REQUIRE(index.Write([](Database& db) { return db.Exec("CREATE TABLE probe (x INTEGER)"); }).ok());
  const Index::Durability rebuildable = Index::Durability::kRebuildable;

  uint64_t before = WalSyncs();
  REQUIRE(index.Write(Insert(1)).ok());
  CHECK(WalSyncs() == before + 1);
  before = WalSyncs();
  REQUIRE(index.Write(Insert(2), rebuildable).ok());
  REQUIRE(index.Write(Insert(3), rebuildable).ok());
  CHECK(WalSyncs() == before);
  REQUIRE(index.Write(Insert(4)).ok());  // synced, and with it the two before
  CHECK(WalSyncs() == before + 1);

  // A batch holding one write that is not rebuildable is synced.
  before = WalSyncs();
  std::future<Status> queued = index.WriteAsync(Insert(5));
  REQUIRE(index.Write(Insert(6), rebuildable).ok());
  REQUIRE(queued.get().ok());
  CHECK(WalSyncs() > before);

  // Past the bound since the last synced commit, a rebuildable one is synced too.
  std::this_thread::sleep_for(std::chrono::milliseconds(Index::kMaxUnsyncedMs + 50));
  before = WalSyncs();
  REQUIRE(index.Write(Insert(7), rebuildable).ok());
  CHECK(WalSyncs() == before + 1);
  before = WalSyncs();
  REQUIRE(index.Write(Insert(8), rebuildable).ok());
  CHECK(WalSyncs() == before);

  auto reader = Database::Open(dir.path() / "index.sqlite", true);
  REQUIRE(reader.ok());
  Statement count(reader.value()->handle(), "SELECT COUNT(*) FROM probe");
  REQUIRE(count.Step().value());
  CHECK(count.Int(0) == 8);
}

TEST_CASE("a segment object's row lost with its unsynced commit is indexed again by start-up recovery",
          "[ingest][recovery][segment]") {
  InitializeDicom();
  test::ScratchDir dir;
  const std::filesystem::path root = dir.path() / "storage";
  const std::filesystem::path snapshot = dir.path() / "durable";
  samples::SeriesSpec spec;
  spec.patient_name = "Zhang^Wei";
  spec.patient_id = "RB1";
  spec.modality = "CT";
  spec.instances = 3;
  spec.rows = spec.columns = 32;
  auto ct = samples::WriteSeries(spec, dir.path() / "in");
  REQUIRE(ct.ok());
  Config config;
  Member zhuozhou;
  zhuozhou.id = "zhuozhou";
  zhuozhou.ae_titles = {"ZZ_PACS"};
  config.members.push_back(zhuozhou);
  std::vector<std::string> uids, paths;
  {
    ObjectStore store{root};
    REQUIRE(store.Prepare().ok());
    auto opened = Index::Open(root / "index.sqlite");
    REQUIRE(opened.ok());
    Index& index = *opened.value();
    store.UseIndex(&index);
    Ingest ingest(store, index, [] { return int64_t{1'800'000'000'000}; });
    const std::filesystem::path segments = root / "segments";
    std::filesystem::create_directories(segments);
    Result<std::string> key = SegmentTrailerKey(segments, true);
    REQUIRE(key.ok());
    std::vector<std::string> objects;
    for (size_t i = 0; i < ct->size(); ++i) {
      objects.push_back(test::AsReceived(ct.value()[i], "ZZ_PACS", UID_CTImageStorage,
                                         dir.path() / ("r" + std::to_string(i) + ".dcm")));
      uids.push_back(ReadInstanceSummary(ct.value()[i])->sop_instance_uid);
    }
    paths = test::WriteSealedSegment(segments, "20260101T000000-1-1.seg", objects, key.value());
    auto store_at = [&](size_t i, bool synced) {
      StoreRequest request;
      request.calling_ae_title = "ZZ_PACS";
      request.member_id = "zhuozhou";
      request.negotiated_sop_class_uid = UID_CTImageStorage;
      request.affected_sop_instance_uid = uids[i];
      request.segment_object = paths[i];
      request.segment_synced = synced;
      return ingest.Store(request).code;
    };
    // Not synced by its segment (a pre-written one's object): its commit syncs the WAL.
    uint64_t before = WalSyncs();
    REQUIRE(store_at(0, false) == IngestCode::kStored);
    CHECK(WalSyncs() == before + 1);
    // What a power cut from here on leaves of the index: its files as they are now.
    std::filesystem::create_directories(snapshot);
    for (const char* f : {"index.sqlite", "index.sqlite-wal"}) std::filesystem::copy_file(root / f, snapshot / f);
    before = WalSyncs();
    REQUIRE(store_at(1, true) == IngestCode::kStored);
    REQUIRE(store_at(2, true) == IngestCode::kStored);
    CHECK(WalSyncs() == before);
    CHECK(index.FindInstance(uids[2]));
  }
  // The power cut: the index as it was synced, the segment as it is.
  for (const char* f : {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"}) std::filesystem::remove(root / f);
  for (const char* f : {"index.sqlite", "index.sqlite-wal"}) std::filesystem::copy_file(snapshot / f, root / f);
  ObjectStore store{root};
  REQUIRE(store.Prepare().ok());
  auto opened = Index::Open(root / "index.sqlite");
  REQUIRE(opened.ok());
  Index& index = *opened.value();
  store.UseIndex(&index);
  CHECK(index.FindInstance(uids[0]));
  CHECK_FALSE(index.FindInstance(uids[1]));
  CHECK_FALSE(index.FindInstance(uids[2]));
  Ingest ingest(store, index, [] { return int64_t{1'800'000'100'000}; });
  Result<RecoveryReport> report = RecoverStorage(store, index, ingest, config, 1'800'000'100'000);
  REQUIRE(report.ok());
  CHECK(report->segment_objects_indexed == 2);
  CHECK(report->segment_objects_refused == 0);
  for (size_t i = 0; i < 3; ++i) {
    REQUIRE(index.FindInstance(uids[i]));
    CHECK(index.FindInstance(uids[i])->relative_path == paths[i]);
  }
}
