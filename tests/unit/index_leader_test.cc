// The index's group commit: a caller alone commits its own write (no hand-off); with neighbours,
// and for writes nobody waits for, the writer thread leads the batches.
#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "server/store/index.h"
#include "server/store/sqlite.h"
#include "tests/support/process.h"

using namespace teleread;

namespace {

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
    holding_.get_future().wait();
  }
  ~HeldLeader() {
    if (!released_) (void)Release();
  }
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
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const int x = t * kEach + i;
        answers[t].push_back(index->Write([x](Database& db) {
          if (Status s = InsertRow(db, x); !s.ok()) return s;
          // Every seventh is refused after its row was written: its own savepoint undoes it.
          return x % 7 == 0 ? Status::Conflict("refused " + std::to_string(x)) : Status::Ok();
        }));
      }
    });
  }
  for (std::thread& t : threads) t.join();
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

TEST_CASE("a refused request does not undo its neighbours, and a caller alone again leads", "[store][index]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "index.sqlite";
  const std::unique_ptr<Index> opened = ProbeIndex(path);
  Index& index = *opened;

  std::mutex mu;
  std::vector<std::thread::id> ran_on;
  auto write = [&](int x, bool refuse) {
    return std::async(std::launch::async, [&, x, refuse] {
      const std::thread::id caller = std::this_thread::get_id();
      std::thread::id runner;
      Status s = index.Write([&, x, refuse](Database& db) {
        runner = std::this_thread::get_id();
        if (Status st = InsertRow(db, x); !st.ok()) return st;
        return refuse ? Status::PermissionDenied("not this one") : Status::Ok();
      });
      std::lock_guard<std::mutex> lock(mu);
      ran_on.push_back(runner);
      return std::make_pair(s, runner == caller);
    });
  };
  std::future<std::pair<Status, bool>> a, b, c;
  {
    HeldLeader held(index);
    a = write(1, false);
    REQUIRE(test::WaitFor([&] { return index.QueuedWrites() == 1; }));
    b = write(2, true);
    REQUIRE(test::WaitFor([&] { return index.QueuedWrites() == 2; }));
    c = write(3, false);
    REQUIRE(test::WaitFor([&] { return index.QueuedWrites() == 3; }));  // all three in the next batch
    REQUIRE(held.Release().ok());
  }
  const auto ra = a.get(), rb = b.get(), rc = c.get();
  CHECK(ra.first.ok());
  CHECK(rb.first.code() == Status::Code::kPermissionDenied);
  CHECK(rc.first.ok());
  CHECK(Rows(path) == std::set<int>{1, 3});
  // One batch: one thread ran all three (the writer thread, as they had company).
  REQUIRE(ran_on.size() == 3);
  CHECK(ran_on[0] == ran_on[1]);
  CHECK(ran_on[1] == ran_on[2]);
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
  std::thread closer;
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
    closer = std::thread([&] { opened.reset(); });
    REQUIRE(held.Release().ok());
  }
  closer.join();  // returns once every queued write is answered
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
