#include <fcntl.h>
#include <unistd.h>
// A synced segment object's index row commits without the WAL's sync (Index::Durability::
// kRebuildable): a power cut can take the row, never the object, and start-up recovery indexes
// it again from its sealed trailer. Everything else still commits synced.
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcuid.h"

#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "samples/synthetic.h"
#include "server/reading/ingest.h"
#include "server/reading/recovery.h"
#include "server/store/direct_file.h"
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

namespace {

// A CT series of `n` slices from ZZ_PACS, written as sealed objects into one segment of the
// storage under `root`: Store them as the association would after receiving each.
struct SegmentFixture {
  explicit SegmentFixture(const std::filesystem::path& scratch, size_t n) : dir(scratch), root(scratch / "storage") {
    InitializeDicom();
    samples::SeriesSpec spec;
    spec.patient_name = "Zhang^Wei";
    spec.patient_id = "RB1";
    spec.modality = "CT";
    spec.instances = static_cast<int>(n);
    spec.rows = spec.columns = 32;
    auto ct = samples::WriteSeries(spec, dir / "in");
    REQUIRE(ct.ok());
    std::filesystem::create_directories(root / "segments");
    Result<std::string> key = SegmentTrailerKey(root / "segments", true);
    REQUIRE(key.ok());
    std::vector<std::string> objects;
    for (size_t i = 0; i < n; ++i) {
      objects.push_back(
          test::AsReceived(ct.value()[i], "ZZ_PACS", UID_CTImageStorage, dir / ("r" + std::to_string(i) + ".dcm")));
      uids.push_back(ReadInstanceSummary(ct.value()[i])->sop_instance_uid);
    }
    paths = test::WriteSealedSegment(root / "segments", "20260101T000000-1-1.seg", objects, key.value());
    Member zhuozhou;
    zhuozhou.id = "zhuozhou";
    zhuozhou.ae_titles = {"ZZ_PACS"};
    config.members.push_back(zhuozhou);
    Open();
  }
  void Open() {
    store = std::make_unique<ObjectStore>(root);
    REQUIRE(store->Prepare().ok());
    auto opened = Index::Open(root / "index.sqlite");
    REQUIRE(opened.ok());
    index = std::move(opened.value());
    index->set_max_unsynced_ms_for_test(600'000);  // no bound passes while the checks run
    store->UseIndex(index.get());
    ingest = std::make_unique<Ingest>(*store, *index, [] { return int64_t{1'800'000'000'000}; });
  }
  void Close() {
    ingest.reset();
    index.reset();
    store.reset();
  }
  IngestCode StoreAt(size_t i, bool synced, PendingSync* sync = nullptr) {
    StoreRequest request;
    request.segment_sync = sync;
    request.calling_ae_title = "ZZ_PACS";
    request.member_id = "zhuozhou";
    request.negotiated_sop_class_uid = UID_CTImageStorage;
    request.affected_sop_instance_uid = uids[i];
    request.segment_object = paths[i];
    request.segment_synced = synced;
    return ingest->Store(request).code;
  }

  std::filesystem::path dir, root;
  Config config;
  std::vector<std::string> uids, paths;
  std::unique_ptr<ObjectStore> store;
  std::unique_ptr<Index> index;
  std::unique_ptr<Ingest> ingest;
};

}  // namespace

TEST_CASE("a segment object's row lost with its unsynced commit is indexed again by start-up recovery",
          "[ingest][recovery][segment]") {
  test::ScratchDir scratch;
  SegmentFixture f(scratch.path(), 4);
  const std::filesystem::path snapshot = scratch.path() / "durable";
  // The study's first row is synced, though its segment was: it says who owns the study.
  uint64_t before = WalSyncs();
  REQUIRE(f.StoreAt(0, true) == IngestCode::kStored);
  CHECK(WalSyncs() == before + 1);
  // Not synced by its segment (a pre-written one's object): its commit syncs the WAL.
  REQUIRE(f.StoreAt(1, false) == IngestCode::kStored);
  CHECK(WalSyncs() == before + 2);
  // What a power cut from here on leaves of the index: its files as they are now.
  std::filesystem::create_directories(snapshot);
  for (const char* name : {"index.sqlite", "index.sqlite-wal"}) {
    std::filesystem::copy_file(f.root / name, snapshot / name);
  }
  before = WalSyncs();
  REQUIRE(f.StoreAt(2, true) == IngestCode::kStored);
  REQUIRE(f.StoreAt(3, true) == IngestCode::kStored);
  CHECK(WalSyncs() == before);
  CHECK(f.index->FindInstance(f.uids[3]));
  f.Close();

  // The power cut: the index as it was synced, the segment as it is.
  for (const char* name : {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm"}) {
    std::filesystem::remove(f.root / name);
  }
  for (const char* name : {"index.sqlite", "index.sqlite-wal"}) {
    std::filesystem::copy_file(snapshot / name, f.root / name);
  }
  f.Open();
  CHECK(f.index->FindInstance(f.uids[1]));
  CHECK_FALSE(f.index->FindInstance(f.uids[2]));
  CHECK_FALSE(f.index->FindInstance(f.uids[3]));
  Result<RecoveryReport> report = RecoverStorage(*f.store, *f.index, *f.ingest, f.config, 1'800'000'100'000);
  REQUIRE(report.ok());
  CHECK(report->segment_objects_indexed == 2);
  CHECK(report->segment_objects_refused == 0);
  for (size_t i = 0; i < 4; ++i) {
    REQUIRE(f.index->FindInstance(f.uids[i]));
    CHECK(f.index->FindInstance(f.uids[i])->relative_path == f.paths[i]);
  }
}

TEST_CASE("two copies of one UID never lie sealed while either's row is unsynced", "[ingest][segment]") {
  test::ScratchDir scratch;
  SegmentFixture f(scratch.path(), 4);
  REQUIRE(f.StoreAt(0, true) == IngestCode::kStored);  // the study's first row

  // Another association receives a copy of the UID meanwhile: this row is synced.
  {
    Result<Ingest::Receiving> other = f.ingest->BeginReceive(f.uids[1]);
    Result<Ingest::Receiving> mine = f.ingest->BeginReceive(f.uids[1]);
    REQUIRE(other.ok());
    REQUIRE(mine.ok());
    const uint64_t before = WalSyncs();
    REQUIRE(f.StoreAt(1, true) == IngestCode::kStored);
    CHECK(WalSyncs() == before + 1);
  }
  // Alone, it commits unsynced; a copy of its UID arriving afterwards syncs it before its data
  // set is received, and the next one finds it durable.
  {
    Result<Ingest::Receiving> mine = f.ingest->BeginReceive(f.uids[2]);
    REQUIRE(mine.ok());
    const uint64_t before = WalSyncs();
    REQUIRE(f.StoreAt(2, true) == IngestCode::kStored);
    CHECK(WalSyncs() == before);
  }
  const uint64_t epoch = f.index->sync_epoch();
  {
    Result<Ingest::Receiving> resend = f.ingest->BeginReceive(f.uids[2]);
    REQUIRE(resend.ok());
    CHECK(f.index->sync_epoch() == epoch + 1);
  }
  {
    Result<Ingest::Receiving> again = f.ingest->BeginReceive(f.uids[2]);
    REQUIRE(again.ok());
    CHECK(f.index->sync_epoch() == epoch + 1);
  }
  // A copy of the UID left sealed with no row (refused for a reason that may pass): later rows of
  // the UID are synced.
  f.ingest->KeepsSealedCopy(f.uids[3]);
  {
    Result<Ingest::Receiving> mine = f.ingest->BeginReceive(f.uids[3]);
    REQUIRE(mine.ok());
    const uint64_t before = WalSyncs();
    REQUIRE(f.StoreAt(3, true) == IngestCode::kStored);
    CHECK(WalSyncs() == before + 1);
  }
}

TEST_CASE("a segment object's row waits for the receiver's running sync, and a failed sync refuses it unindexed",
          "[ingest][segment]") {
  test::ScratchDir scratch;
  SegmentFixture f(scratch.path(), 2);
  const std::filesystem::path segment = f.root / "segments" / "20260101T000000-1-1.seg";
  const int fd = ::open(segment.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  {
    PendingSync failing(fd);
    failing.fail_for_test(EIO);
    CHECK(f.StoreAt(0, true, &failing) == IngestCode::kNoStorage);
    CHECK_FALSE(f.index->FindInstance(f.uids[0]));
  }
  bool row_before_sync = true;  // outlives the sync, whose destructor waits (and calls the hook)
  PendingSync sync(fd);
  sync.on_wait_for_test([&] { row_before_sync = f.index->FindInstance(f.uids[0]).has_value(); });
  CHECK(f.StoreAt(0, true, &sync) == IngestCode::kStored);
  sync.on_wait_for_test(nullptr);
  CHECK_FALSE(row_before_sync);  // Store waited for the sync, and only then wrote the row
  CHECK_FALSE(sync.pending());   // waited for before the row
  CHECK(sync.Wait() == 0);
  REQUIRE(f.index->FindInstance(f.uids[0]));
  ::close(fd);
}
