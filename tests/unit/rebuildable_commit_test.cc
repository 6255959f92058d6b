// A synced segment object's index row commits without the WAL's sync (Index::Durability::
// kRebuildable): a power cut can take the row, never the object, and start-up recovery indexes
// it again from its sealed trailer. Everything else still commits synced.
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"

#include <chrono>
#include <future>
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
  index.set_max_unsynced_ms_for_test(600'000);  // no bound passes while the checks run

  uint64_t before = WalSyncs();
  REQUIRE(index.Write(Insert(1)).ok());
  CHECK(WalSyncs() == before + 1);
  before = WalSyncs();
  REQUIRE(index.Write(Insert(2), rebuildable).ok());
  REQUIRE(index.Write(Insert(3), rebuildable).ok());
  CHECK(WalSyncs() == before);
  REQUIRE(index.Write(Insert(4)).ok());  // synced, and with it the two before
  CHECK(WalSyncs() == before + 1);

  // One batch holding a rebuildable write and one that is not: synced. The writer is held
  // while both queue.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::future<Status> holder = index.WriteAsync([released](Database&) {
    released.wait();
    return Status::Ok();
  });
  while (index.QueuedWrites() != 0) std::this_thread::yield();  // the holder's batch runs
  std::future<Status> synced = index.WriteAsync(Insert(5));
  std::future<Status> rebuilt = std::async(std::launch::async, [&] { return index.Write(Insert(6), rebuildable); });
  while (index.QueuedWrites() != 2) std::this_thread::yield();
  before = WalSyncs();
  release.set_value();
  REQUIRE(holder.get().ok());
  REQUIRE(synced.get().ok());
  REQUIRE(rebuilt.get().ok());
  CHECK(WalSyncs() == before + 1);  // the holder's batch changed nothing: only the mixed one synced

  // A synced commit that changes nothing syncs nothing, and leaves an unsynced one unsynced.
  REQUIRE(index.Write(Insert(7), rebuildable).ok());
  before = WalSyncs();
  REQUIRE(index.Write([](Database& db) { return db.Exec("UPDATE probe SET x = x WHERE x < 0"); }).ok());
  CHECK(WalSyncs() == before);
  // Past the bound since that first unsynced commit, the next rebuildable batch is synced.
  index.set_max_unsynced_ms_for_test(0);
  REQUIRE(index.Write(Insert(8), rebuildable).ok());
  CHECK(WalSyncs() == before + 1);

  // With no batch after it, the writer thread syncs the WAL file itself once the bound passes,
  // also when the write was led by its caller (a lone writer's batches are: the writer thread
  // then waits untimed until woken for it).
  for (int i = 0; i < 5; ++i) REQUIRE(index.Write(Insert(100 + i)).ok());
  const uint64_t idle = index.idle_wal_syncs();
  index.set_max_unsynced_ms_for_test(50);
  before = WalSyncs();
  REQUIRE(index.Write(Insert(9), rebuildable).ok());
  CHECK(WalSyncs() == before);
  for (int i = 0; i < 500 && index.idle_wal_syncs() == idle; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(index.idle_wal_syncs() == idle + 1);

  auto reader = Database::Open(dir.path() / "index.sqlite", true);
  REQUIRE(reader.ok());
  Statement count(reader.value()->handle(), "SELECT COUNT(*) FROM probe");
  REQUIRE(count.Step().value());
  CHECK(count.Int(0) == 14);
}

TEST_CASE("a segment object's row lost with its unsynced commit is indexed again by start-up recovery",
          "[ingest][recovery][segment]") {
  InitializeDicom();
  test::ScratchDir dir;
  const std::filesystem::path root = dir.path() / "storage";
  const std::filesystem::path segments = root / "segments";
  const std::filesystem::path snapshot = dir.path() / "durable";
  samples::SeriesSpec spec;
  spec.patient_name = "Zhang^Wei";
  spec.patient_id = "RB1";
  spec.modality = "CT";
  spec.instances = 4;
  spec.rows = spec.columns = 32;
  auto ct = samples::WriteSeries(spec, dir.path() / "in");
  REQUIRE(ct.ok());
  Config config;
  Member zhuozhou;
  zhuozhou.id = "zhuozhou";
  zhuozhou.ae_titles = {"ZZ_PACS"};
  config.members.push_back(zhuozhou);
  std::vector<std::string> uids, paths, twin;
  {
    ObjectStore store{root};
    REQUIRE(store.Prepare().ok());
    auto opened = Index::Open(root / "index.sqlite");
    REQUIRE(opened.ok());
    Index& index = *opened.value();
    index.set_max_unsynced_ms_for_test(600'000);  // no bound passes while the checks run
    store.UseIndex(&index);
    Ingest ingest(store, index, [] { return int64_t{1'800'000'000'000}; });
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
    // In a segment made later: another object under the last one's UID, still in flight at the cut.
    DcmFileFormat other;
    REQUIRE(other.loadFile(ct.value()[3].c_str()).good());
    REQUIRE(other.getDataset()->putAndInsertString(DCM_ImageComments, "other content").good());
    REQUIRE(other.saveFile((dir.path() / "other.dcm").c_str(), EXS_LittleEndianExplicit).good());
    twin = test::WriteSealedSegment(
        segments, "20260101T000000-1-2.seg",
        {test::AsReceived(dir.path() / "other.dcm", "ZZ_PACS", UID_CTImageStorage, dir.path() / "r-other.dcm")},
        key.value());
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
    // The study's first row is synced, though its segment was: it says who owns the study.
    uint64_t before = WalSyncs();
    REQUIRE(store_at(0, true) == IngestCode::kStored);
    CHECK(WalSyncs() == before + 1);
    // Not synced by its segment (a pre-written one's object): its commit syncs the WAL.
    REQUIRE(store_at(1, false) == IngestCode::kStored);
    CHECK(WalSyncs() == before + 2);
    // What a power cut from here on leaves of the index: its files as they are now.
    std::filesystem::create_directories(snapshot);
    for (const char* f : {"index.sqlite", "index.sqlite-wal"}) std::filesystem::copy_file(root / f, snapshot / f);
    before = WalSyncs();
    REQUIRE(store_at(2, true) == IngestCode::kStored);
    REQUIRE(store_at(3, true) == IngestCode::kStored);
    CHECK(WalSyncs() == before);
    CHECK(index.FindInstance(uids[3]));
  }
  // The power cut: the index as it was synced, the segments as they are.
  for (const char* f : {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"}) std::filesystem::remove(root / f);
  for (const char* f : {"index.sqlite", "index.sqlite-wal"}) std::filesystem::copy_file(snapshot / f, root / f);
  ObjectStore store{root};
  REQUIRE(store.Prepare().ok());
  auto opened = Index::Open(root / "index.sqlite");
  REQUIRE(opened.ok());
  Index& index = *opened.value();
  store.UseIndex(&index);
  CHECK(index.FindInstance(uids[1]));
  CHECK_FALSE(index.FindInstance(uids[2]));
  CHECK_FALSE(index.FindInstance(uids[3]));
  Ingest ingest(store, index, [] { return int64_t{1'800'000'100'000}; });
  Result<RecoveryReport> report = RecoverStorage(store, index, ingest, config, 1'800'000'100'000);
  REQUIRE(report.ok());
  CHECK(report->segment_objects_indexed == 2);
  for (size_t i = 0; i < 4; ++i) {
    REQUIRE(index.FindInstance(uids[i]));
    CHECK(index.FindInstance(uids[i])->relative_path == paths[i]);
  }
  // The copy under the same UID that this start could not tell from the indexed one: refused,
  // but its trailer kept for the operator (not voided as a definite refusal would be).
  CHECK(report->segment_objects_refused == 1);
  Result<std::string> key = SegmentTrailerKey(segments, false);
  REQUIRE(key.ok());
  Result<SegmentScan> left = FindSegmentObjects(segments / "20260101T000000-1-2.seg", 0, 4096, key.value());
  REQUIRE(left.ok());
  CHECK(left->objects.size() == 1);
}
