// The index's group commit: a caller alone commits its own write (no hand-off); with neighbours,
// and for writes nobody waits for, the writer thread leads the batches.
#include <catch2/catch.hpp>

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "server/store/index.h"
#include "server/store/sqlite.h"
#include "tests/support/process.h"

using namespace teleread;

namespace {

// Waits for `f`: a lost hand-off fails the test (abort, as its threads still use the test's
// objects) instead of hanging it.
template <class Future>
void Await(Future& f, const char* what) {
  if (f.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    std::fprintf(stderr, "%s: not finished within 30 s\n", what);
    std::abort();
  }
}

Status InsertRow(Database& db, int x) { return db.Exec("INSERT INTO leader_probe VALUES (" + std::to_string(x) + ")"); }

Index::WriteFn Insert(int x) {
  return [x](Database& db) { return InsertRow(db, x); };
}

std::set<int> Rows(const std::filesystem::path& path) {
  auto db = Database::Open(path, true);
  REQUIRE(db.ok());
  Statement q(db.value()->handle(), "SELECT x FROM leader_probe");
  std::set<int> rows;
  for (;;) {
    Result<bool> row = q.Step();
    REQUIRE(row.ok());
    if (!row.value()) break;
    rows.insert(static_cast<int>(q.Int(0)));
  }
  return rows;
}

std::unique_ptr<Index> ProbeIndex(const std::filesystem::path& path) {
  auto opened = Index::Open(path);
  REQUIRE(opened.ok());
  REQUIRE(opened.value()->Write([](Database& db) { return db.Exec("CREATE TABLE leader_probe (x INTEGER)"); }).ok());
  return std::move(opened.value());
}

// A write that holds the batch it is in until released, so that what others submit meanwhile
// queues for the next batch.
class HeldLeader {
 public:
  explicit HeldLeader(Index& index, std::function<void()> after_release = nullptr) {
    std::shared_future<void> released = release_.get_future().share();
    held_ = std::async(std::launch::async, [&index, released, after_release, this] {
      return index.Write([&](Database&) {
        holding_.set_value();
        released.wait();
        if (after_release) after_release();
        return Status::Ok();
      });
    });
    std::future<void> holding = holding_.get_future();
    Await(holding, "the held write's start");
  }
  ~HeldLeader() {
    if (!released_) (void)Release();
  }
  Status Release() {
    released_ = true;
    release_.set_value();
    Await(held_, "the held write");
    return held_.get();
  }

 private:
  std::promise<void> release_, holding_;
  std::future<Status> held_;
  bool released_ = false;
};

}  // namespace

TEST_CASE("a lone caller's write runs on its own thread and is committed when it returns", "[store][index]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "index.sqlite";
  const std::unique_ptr<Index> index = ProbeIndex(path);
  for (int i = 0; i < 10; ++i) {
    std::thread::id ran_on;
    REQUIRE(index
                ->Write([&](Database& db) {
                  ran_on = std::this_thread::get_id();
                  return InsertRow(db, i);
                })
                .ok());
    INFO("write " << i);
    // The writer thread leads until the index has seen a few batches with no company.
    if (i == 0) CHECK(ran_on != std::this_thread::get_id());
    if (i >= 5) CHECK(ran_on == std::this_thread::get_id());  // then no hand-off to another thread
    CHECK(Rows(path).count(i) == 1);
  }
}

TEST_CASE("many threads writing at once each get their own answer", "[store][index]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "index.sqlite";
  const std::unique_ptr<Index> index = ProbeIndex(path);
  constexpr int kThreads = 8, kEach = 150;
  std::vector<std::vector<Status>> answers(kThreads);
  std::vector<std::future<void>> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.push_back(std::async(std::launch::async, [&, t] {
      for (int i = 0; i < kEach; ++i) {
        const int x = t * kEach + i;
        answers[t].push_back(index->Write([x](Database& db) {
          if (Status s = InsertRow(db, x); !s.ok()) return s;
          // Every seventh is refused after its row was written: its own savepoint undoes it.
          return x % 7 == 0 ? Status::Conflict("refused " + std::to_string(x)) : Status::Ok();
        }));
      }
    }));
  }
  for (std::future<void>& t : threads) Await(t, "a writing thread");
  const std::set<int> rows = Rows(path);
  int refused = 0;
  for (int t = 0; t < kThreads; ++t) {
    REQUIRE(answers[t].size() == static_cast<size_t>(kEach));
    for (int i = 0; i < kEach; ++i) {
      const int x = t * kEach + i;
      const Status& s = answers[t][i];
      INFO("write " << x << ": " << s.ToString());
      if (x % 7 == 0) {
        ++refused;
        CHECK(s.code() == Status::Code::kConflict);
        CHECK(s.message() == "refused " + std::to_string(x));  // its own answer, not a neighbour's
      } else {
        CHECK(s.ok());
      }
      CHECK(rows.count(x) == (x % 7 == 0 ? 0u : 1u));
    }
  }
  CHECK(rows.size() == static_cast<size_t>(kThreads * kEach - refused));
}

TEST_CASE("a refused or throwing request does not undo its neighbours, and a caller alone again leads",
          "[store][index]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "index.sqlite";
  const std::unique_ptr<Index> opened = ProbeIndex(path);
  Index& index = *opened;

  std::mutex mu;
  std::vector<std::thread::id> ran_on;
  enum Outcome { kOk, kRefuse, kThrow };
  auto write = [&](int x, Outcome outcome) {
    return std::async(std::launch::async, [&, x, outcome] {
      const std::thread::id caller = std::this_thread::get_id();
      std::thread::id runner;
      Status s = index.Write([&, x, outcome](Database& db) {
        runner = std::this_thread::get_id();
        if (Status st = InsertRow(db, x); !st.ok()) return st;
        if (outcome == kThrow) throw std::runtime_error("thrown by " + std::to_string(x));
        return outcome == kRefuse ? Status::PermissionDenied("not this one") : Status::Ok();
      });
      std::lock_guard<std::mutex> lock(mu);
      ran_on.push_back(runner);
      return std::make_pair(s, runner == caller);
    });
  };
  std::future<std::pair<Status, bool>> a, b, c, d;
  {
    HeldLeader held(index);
    a = write(1, kOk);
    REQUIRE(test::WaitFor([&] { return index.QueuedWrites() == 1; }));
    b = write(2, kRefuse);
    REQUIRE(test::WaitFor([&] { return index.QueuedWrites() == 2; }));
    c = write(3, kThrow);
    REQUIRE(test::WaitFor([&] { return index.QueuedWrites() == 3; }));
    d = write(4, kOk);
    REQUIRE(test::WaitFor([&] { return index.QueuedWrites() == 4; }));  // all four in the next batch
    REQUIRE(held.Release().ok());
  }
  for (auto* f : {&a, &b, &c, &d}) Await(*f, "a queued write");
  const auto ra = a.get(), rb = b.get(), rc = c.get(), rd = d.get();
  CHECK(ra.first.ok());
  CHECK(rb.first.code() == Status::Code::kPermissionDenied);
  CHECK(rc.first.code() == Status::Code::kIOError);
  CHECK_THAT(rc.first.message(), Catch::Contains("thrown by 3"));
  CHECK(rd.first.ok());
  CHECK(Rows(path) == std::set<int>{1, 4});
  // One batch: one thread ran all four (the writer thread, as they had company).
  REQUIRE(ran_on.size() == 4);
  CHECK(ran_on[0] == ran_on[1]);
  CHECK(ran_on[1] == ran_on[2]);
  CHECK(ran_on[2] == ran_on[3]);
  CHECK_FALSE(ra.second);

  // Alone again, a caller soon commits its own writes.
  std::thread::id last;
  for (int i = 0; i < 6; ++i) {
    REQUIRE(index
                .Write([&](Database&) {
                  last = std::this_thread::get_id();
                  return Status::Ok();
                })
                .ok());
  }
  CHECK(last == std::this_thread::get_id());
}

TEST_CASE("writes nobody waits for complete with no caller around to lead", "[store][index]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "index.sqlite";
  const std::unique_ptr<Index> opened = ProbeIndex(path);
  Index& index = *opened;

  std::vector<std::future<Status>> pending;
  for (int x = 0; x < 50; ++x) pending.push_back(index.WriteAsync(Insert(x)));
  for (std::future<Status>& f : pending) {
    REQUIRE(f.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
    CHECK(f.get().ok());
  }
  CHECK(Rows(path).size() == 50);

  // Queued behind a caller's batch with no other caller waiting: the writer thread leads it.
  std::future<Status> late;
  {
    HeldLeader held(index);
    late = index.WriteAsync(Insert(100));
    REQUIRE(test::WaitFor([&] { return index.QueuedWrites() == 1; }));
    REQUIRE(held.Release().ok());
  }
  REQUIRE(late.wait_for(std::chrono::seconds(20)) == std::future_status::ready);
  CHECK(late.get().ok());
  CHECK(Rows(path).count(100) == 1);
}

TEST_CASE("shutting the index down refuses new writes and finishes the queued ones", "[store][index]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "index.sqlite";
  std::unique_ptr<Index> opened = ProbeIndex(path);
  Index* index = opened.get();

  // Submitted from inside the running batch once the index is stopping; then the batch ends.
  std::future<Status> refused;
  int refused_x = 0;
  std::future<Status> queued_async;
  std::future<Status> queued_sync;
  std::future<void> closer;
  {
    HeldLeader held(*index, [&] {
      // The destructor sets the index stopping before it waits for the writer: poll until then.
      for (int i = 0; i < 20'000; ++i) {
        std::future<Status> f = index->WriteAsync(Insert(900 + i));
        if (f.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
          refused = std::move(f);
          refused_x = 900 + i;
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
    queued_async = index->WriteAsync(Insert(1));
    queued_sync = std::async(std::launch::async, [index] { return index->Write(Insert(2)); });
    REQUIRE(test::WaitFor([&] { return index->QueuedWrites() == 2; }));
    closer = std::async(std::launch::async, [&] { opened.reset(); });
    REQUIRE(held.Release().ok());
  }
  Await(closer, "the destructor");  // returns once every queued write is answered
  Await(queued_sync, "the queued Write");
  REQUIRE(refused.valid());
  const Status r = refused.get();
  CHECK(r.code() == Status::Code::kIOError);
  CHECK_THAT(r.message(), Catch::Contains("shutting down"));
  REQUIRE(queued_async.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
  CHECK(queued_async.get().ok());
  CHECK(queued_sync.get().ok());
  const std::set<int> rows = Rows(path);
  CHECK(rows.count(1) == 1);
  CHECK(rows.count(2) == 1);
  // The probes accepted before the index stopped were finished too; the refused one is not there.
  CHECK(rows.count(refused_x) == 0);
  CHECK(rows.size() == static_cast<size_t>(2 + refused_x - 900));
}

TEST_CASE("a write that throws in a caller-led batch fails alone, and the caller leads on", "[store][index]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "index.sqlite";
  const std::unique_ptr<Index> index = ProbeIndex(path);
  for (int i = 0; i < 6; ++i) REQUIRE(index->Write(Insert(i)).ok());  // alone long enough to lead
  std::thread::id ran_on;
  const Status thrown = index->Write([&](Database& db) -> Status {
    ran_on = std::this_thread::get_id();
    if (Status s = InsertRow(db, 100); !s.ok()) return s;
    throw std::runtime_error("thrown on the caller's thread");
  });
  CHECK(ran_on == std::this_thread::get_id());
  CHECK(thrown.code() == Status::Code::kIOError);
  CHECK_THAT(thrown.message(), Catch::Contains("thrown on the caller's thread"));
  // Its row was undone; the index still has a leader for what comes next, the caller itself.
  REQUIRE(index
              ->Write([&](Database& db) {
                ran_on = std::this_thread::get_id();
                return InsertRow(db, 101);
              })
              .ok());
  CHECK(ran_on == std::this_thread::get_id());
  std::future<Status> async = index->WriteAsync(Insert(102));
  Await(async, "a write nobody waits for");
  CHECK(async.get().ok());
  CHECK(Rows(path) == std::set<int>{0, 1, 2, 3, 4, 5, 101, 102});
}

namespace {

NewInstance Numbered(int n) {
  NewInstance in;
  InstanceSummary& s = in.summary;
  s.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2";
  s.sop_instance_uid = "1.4." + std::to_string(n);
  s.study_instance_uid = "1.2." + std::to_string(n / 100);
  s.series_instance_uid = "1.3." + std::to_string(n / 100);
  s.patient_id = "P" + std::to_string(n / 100);
  s.patient_name = "DOE^" + std::to_string(n / 100);
  s.study_date = "20260101";
  s.modality = "CT";
  in.member_id = "m1";
  in.relative_path = "objects/" + std::to_string(n) + ".dcm";
  in.size_bytes = 1;
  in.received_ms = 1;
  return in;
}

std::string Stat(const std::filesystem::path& path, const std::string& idx) {
  auto db = Database::Open(path, true);
  REQUIRE(db.ok());
  Statement q(db.value()->handle(), "SELECT stat FROM sqlite_stat1 WHERE idx = '" + idx + "'");
  Result<bool> row = q.Step();
  REQUIRE(row.ok());
  REQUIRE(row.value());
  return q.Text(0);
}

}  // namespace

TEST_CASE("statistics that fell due are refreshed before a lone caller's next write is answered", "[store][index]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "index.sqlite";
  const std::unique_ptr<Index> index = ProbeIndex(path);
  for (int i = 0; i < 6; ++i) REQUIRE(index->Write(Insert(i)).ok());  // the caller leads now
  const std::string seeded = Stat(path, "sqlite_autoindex_studies_1");
  REQUIRE(seeded == "100000 1");
  // A pooled reader used now (it keeps the statement it ran) plans with the seeded statistics.
  auto reader_used_before = [&] {
    Result<PooledReader> reader = index->OpenReader();
    REQUIRE(reader.ok());
    const size_t kept = reader.value()->kept_statements();
    CachedStatement q(*reader.value(), "SELECT COUNT(*) FROM studies");
    REQUIRE(q->Step().ok());
    return kept > 0;
  };
  CHECK_FALSE(reader_used_before());
  CHECK(reader_used_before());
  const uint64_t epoch = index->statistics_epoch()->load();
  // Enough instances in one write to make the statistics due (10,000 in 100 studies).
  REQUIRE(index
              ->Write([&](Database& db) {
                for (int n = 0; n < 10'000; ++n) {
                  if (Status s = index->AddInstanceInWrite(db, Numbered(n)); !s.ok()) return s;
                }
                return Status::Ok();
              })
              .ok());
  // The caller does not lead past them: the writer thread refreshes them, then leads this write.
  REQUIRE(index->Write(Insert(200)).ok());
  CHECK(Stat(path, "sqlite_autoindex_studies_1") == "100 1");
  // Readers follow: the one opened before is not used again.
  CHECK(index->statistics_epoch()->load() == epoch + 1);
  CHECK_FALSE(reader_used_before());
}

namespace {

// A follower stalled in a signal handler after its write was answered, and what it saw there.
std::atomic<bool> stalled{false}, stall_over{false}, index_gone{false}, gone_during_stall{false};

extern "C" void StallFollower(int) {
  stalled = true;
  timespec left{0, 400'000'000};
  while (nanosleep(&left, &left) != 0) {
  }
  gone_during_stall = index_gone.load();
  stall_over = true;
}

struct StallOnSigusr1 {
  StallOnSigusr1() {
    struct sigaction stall = {};
    stall.sa_handler = StallFollower;
    sigemptyset(&stall.sa_mask);
    REQUIRE(sigaction(SIGUSR1, &stall, &before) == 0);
  }
  ~StallOnSigusr1() { sigaction(SIGUSR1, &before, nullptr); }
  struct sigaction before = {};
};

}  // namespace

TEST_CASE("the index outlives the callers whose writes another thread ran, when destroyed under them",
          "[store][index]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "index.sqlite";
  std::unique_ptr<Index> opened = ProbeIndex(path);
  Index* index = opened.get();
  stalled = stall_over = index_gone = gone_during_stall = false;
  StallOnSigusr1 stall;

  std::future<Status> first, second;
  std::future<void> closer;
  std::promise<pthread_t> second_thread;
  {
    HeldLeader held(*index);
    first = std::async(std::launch::async, [index] { return index->Write(Insert(1)); });
    REQUIRE(test::WaitFor([&] { return index->QueuedWrites() == 1; }));
    second = std::async(std::launch::async, [index, &second_thread] {
      second_thread.set_value(pthread_self());
      return index->Write(Insert(2));
    });
    REQUIRE(test::WaitFor([&] { return index->QueuedWrites() == 2; }));
    // Both wait for the writer thread. The second sleeps in a handler through its answer and the
    // destructor, which must not return (nor free what the second wakes on) before it leaves.
    REQUIRE(pthread_kill(second_thread.get_future().get(), SIGUSR1) == 0);
    REQUIRE(test::WaitFor([] { return stalled.load(); }));
    closer = std::async(std::launch::async, [&] {
      opened.reset();
      index_gone = true;
    });
    REQUIRE(held.Release().ok());
  }
  REQUIRE(test::WaitFor([] { return stall_over.load(); }));
  CHECK_FALSE(gone_during_stall);
  Await(closer, "the destructor");
  Await(first, "the first queued Write");
  Await(second, "the second queued Write");
  CHECK(first.get().ok());
  CHECK(second.get().ok());
  CHECK(Rows(path) == std::set<int>{1, 2});
}

TEST_CASE("the writer thread holds a synced batch for writes on their way, at most its bound, a rebuildable one never",
          "[store][index]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "index.sqlite";
  const std::unique_ptr<Index> index = ProbeIndex(path);
  index->set_gather_us_for_test(20'000'000);  // the test's steps decide, not the clock
  // A fresh index: the writer thread leads (no run of lone batches yet).
  Index::Coming coming = index->ExpectWrite();
  const uint64_t before = index->batches();
  auto first = std::async(std::launch::async, [&] { return index->Write(Insert(1)); });
  REQUIRE(test::WaitFor([&] { return index->QueuedWrites() == 1; }));
  CHECK(first.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout);  // held for the other
  auto second =
      std::async(std::launch::async, [&] { return index->Write(Insert(2), Index::Durability::kSynced, &coming); });
  // Ended by the arrival, not the 20 s bound.
  CHECK(first.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  Await(first, "the first write");
  Await(second, "the write on its way");
  CHECK(first.get().ok());
  CHECK(second.get().ok());
  CHECK(index->batches() == before + 1);  // one batch, one sync
  CHECK(Rows(path) == std::set<int>{1, 2});

  // One that will not come: its Arrived ends the wait.
  Index::Coming lost = index->ExpectWrite();
  auto third = std::async(std::launch::async, [&] { return index->Write(Insert(3)); });
  REQUIRE(test::WaitFor([&] { return index->QueuedWrites() == 1; }));
  CHECK(third.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout);
  lost.Arrived();
  CHECK(third.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  Await(third, "the write held for one that will not come");
  CHECK(third.get().ok());

  // A batch that will not sync shares nothing: not held.
  Index::Coming stuck = index->ExpectWrite();
  auto fourth =
      std::async(std::launch::async, [&] { return index->Write(Insert(4), Index::Durability::kRebuildable); });
  CHECK(fourth.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  // Held no longer than its bound.
  index->set_gather_us_for_test(50'000);
  auto fifth = std::async(std::launch::async, [&] { return index->Write(Insert(5)); });
  CHECK(fifth.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  Await(fourth, "the rebuildable write");
  Await(fifth, "the write held to its bound");
  CHECK(fourth.get().ok());
  CHECK(fifth.get().ok());
  CHECK(Rows(path) == std::set<int>{1, 2, 3, 4, 5});
}
