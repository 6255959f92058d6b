// Reading kept worklist pages ahead of their callers (server/http/worklist_read_ahead.h): after a
// change, a page asked for is read again before the next caller asks, and served to it as kept,
// showing the change; a page nobody asked for since is not read again; past the most read at
// once, the rest stay due and are read at the next polls; only pages read and kept are counted;
// idle, the thread sleeps until a change wakes it (the index calls it after the version moved,
// and holds one such listener); a read that throws does not end it.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "server/http/worklist_page_cache.h"
#include "server/http/worklist_read_ahead.h"
#include "tests/unit/workflow_fixture.h"

using namespace teleread;
using nlohmann::json;
using teleread::test::ReceivedStudy;
using teleread::test::WaitFor;
using teleread::test::WorkflowFixture;

namespace {

const PeerCertificate kWang = test::CentreCertificate("wang.li", "radiologist");

std::shared_ptr<const WorklistPageCache::Page> PageOf(const std::string& items) {
  return WorklistPageCache::Page::Make(items, 1);
}

int64_t Metric(ReadingApi& api, const std::string& name) { return test::Metric(api, name, kWang); }

}  // namespace

TEST_CASE("only pages asked for since their last read ahead, and not current, are read ahead", "[api][worklist]") {
  WorklistPageCache cache;
  int reads_a = 0, reads_b = 0;
  auto read_a = [&] { return WorklistPageCache::Read{PageOf("[a" + std::to_string(++reads_a) + "]"), 1000}; };
  auto read_b = [&] { return WorklistPageCache::Read{PageOf("[b" + std::to_string(++reads_b) + "]"), 1000}; };
  REQUIRE(cache.FindOrRead("a", 1, 0, read_a)->items_json == "[a1]");
  REQUIRE(cache.FindOrRead("b", 1, 0, read_b)->items_json == "[b1]");
  cache.NoteAsked("a", [&] { return std::function<WorklistPageCache::Read()>(read_a); });
  CHECK(cache.ReadAhead(1, 0) == 0);  // current: nothing to read
  CHECK(reads_a == 1);

  CHECK(cache.ReadAhead(2, 0) == 1);  // "a" was asked for; "b" never was
  CHECK(reads_a == 2);
  CHECK(reads_b == 1);
  const size_t hits = cache.hits();
  CHECK(cache.FindOrRead("a", 2, 0, read_a)->items_json == "[a2]");  // kept at the new version
  CHECK(cache.hits() == hits + 1);
  CHECK(reads_a == 2);

  CHECK(cache.ReadAhead(3, 0) == 0);  // not asked since its read ahead
  CHECK(reads_a == 2);
  cache.NoteAsked("a", [&]() -> std::function<WorklistPageCache::Read()> {
    FAIL("made twice");
    return {};
  });
  CHECK(cache.ReadAhead(3, 0) == 1);
  CHECK(reads_a == 3);
}

TEST_CASE("past the most read ahead at once the rest stay due and only pages read and kept are counted",
          "[api][worklist]") {
  WorklistPageCache cache;
  std::map<std::string, int> reads;
  auto reader = [&](const std::string& key) {
    return std::function<WorklistPageCache::Read()>([&reads, key] {
      return WorklistPageCache::Read{PageOf("[" + key + std::to_string(++reads[key]) + "]"), 1000};
    });
  };
  const size_t n = WorklistPageCache::kMaxReadAhead + 2;
  for (size_t i = 0; i < n; ++i) {
    const std::string key = "k" + std::to_string(i);
    REQUIRE(cache.FindOrRead(key, 1, 0, reader(key)));
    cache.NoteAsked(key, [&] { return reader(key); });
  }
  CHECK(cache.ReadAhead(2, 0) == WorklistPageCache::kMaxReadAhead);
  CHECK(reads["k0"] == 1);  // asked first: left for later
  CHECK(reads["k1"] == 1);
  CHECK(reads["k" + std::to_string(n - 1)] == 2);
  CHECK(cache.ReadAhead(2, 0) == 2);  // still due at the same version
  CHECK(reads["k0"] == 2);
  CHECK(reads["k1"] == 2);

  // A read that fails keeps nothing and counts nothing.
  int failed = 0;
  cache.NoteAsked("bad", [&] {
    return std::function<WorklistPageCache::Read()>([&failed] {
      ++failed;
      return WorklistPageCache::Read{};
    });
  });
  CHECK(cache.ReadAhead(3, 0) == 0);
  CHECK(failed == 1);
}

struct ReadAheadFixture : WorkflowFixture {
  ReceivedStudy first = Receive("zhuozhou", "P1", "CT");
  ReceivedStudy second = Receive("zhuozhou", "P2", "CT");
  ReadAheadFixture() {
    Promote();
    api->StartReadAhead(std::chrono::milliseconds(1));
  }
  json Page() {
    const HttpResponse r = api->Handle(HttpRequest{"GET", "/api/v1/worklist?limit=50", "", ""}, kWang);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
  json State(const json& page, const ReceivedStudy& study) {
    for (const json& row : page["items"]) {
      if (row["study_instance_uid"] == study.study_instance_uid) return row["state"];
    }
    return nullptr;
  }
};

TEST_CASE_METHOD(ReadAheadFixture, "after a claim the worklist page is read ahead and served kept, showing the claim",
                 "[workflow][api][worklist]") {
  REQUIRE(State(Page(), first) == "waiting");
  const int64_t ahead = Metric(*api, "teleread_worklist_pages_read_ahead_total");
  REQUIRE(api->Handle(HttpRequest{"POST", "/api/v1/studies/" + first.study_instance_uid + "/claim", "", ""}, kWang)
              .status == 200);
  REQUIRE(WaitFor([&] { return Metric(*api, "teleread_worklist_pages_read_ahead_total") == ahead + 1; }));
  const int64_t kept = Metric(*api, "teleread_worklist_pages_kept_total");
  CHECK(State(Page(), first) == "claimed");
  CHECK(Metric(*api, "teleread_worklist_pages_kept_total") == kept + 1);  // read ahead, not by this request

  // Asked again since: the release is read ahead too; not asked after it, the next change is not.
  REQUIRE(api->Handle(HttpRequest{"POST", "/api/v1/studies/" + first.study_instance_uid + "/release", "", ""}, kWang)
              .status == 200);
  REQUIRE(WaitFor([&] { return Metric(*api, "teleread_worklist_pages_read_ahead_total") == ahead + 2; }));
  REQUIRE(api->Handle(HttpRequest{"POST", "/api/v1/studies/" + second.study_instance_uid + "/claim", "", ""}, kWang)
              .status == 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(Metric(*api, "teleread_worklist_pages_read_ahead_total") == ahead + 2);
  const json now = Page();
  CHECK(State(now, first) == "waiting");
  CHECK(State(now, second) == "claimed");
}

TEST_CASE_METHOD(WorkflowFixture, "the read-ahead thread sleeps while idle and a change wakes it",
                 "[workflow][api][worklist]") {
  ReceivedStudy study = Receive("zhuozhou", "P1", "CT");
  Promote();
  api->StartReadAhead(std::chrono::milliseconds(1), std::chrono::milliseconds(30));
  WorklistReadAhead& ahead = *api->read_ahead();
  auto page = [&] {
    REQUIRE(api->Handle(HttpRequest{"GET", "/api/v1/worklist?limit=50", "", ""}, kWang).status == 200);
  };
  page();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // past the armed 30 ms
  const size_t polls = ahead.polls();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(ahead.polls() == polls);  // not one look at the version while nothing changes
  REQUIRE(ahead.pages_read() == 0);
  REQUIRE(api->Handle(HttpRequest{"POST", "/api/v1/studies/" + study.study_instance_uid + "/claim", "", ""}, kWang)
              .status == 200);
  CHECK(WaitFor([&] { return ahead.pages_read() == 1; }));  // woken by the claim's commit
}

TEST_CASE("a read ahead that throws is logged and the thread reads on", "[api][worklist]") {
  WorklistPageCache cache;
  std::atomic<uint64_t> version{1};
  cache.NoteAsked("bad", [] {
    return std::function<WorklistPageCache::Read()>([]() -> WorklistPageCache::Read { throw std::bad_alloc(); });
  });
  WorklistReadAhead ahead(
      cache, [&] { return version.load(); }, [] { return int64_t{0}; }, nullptr, std::chrono::milliseconds(1));
  version = 2;
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // "bad" read ahead, and thrown
  cache.NoteAsked("good", [] {
    return std::function<WorklistPageCache::Read()>([] { return WorklistPageCache::Read{PageOf("[g]"), 1000}; });
  });
  version = 3;
  CHECK(WaitFor([&] { return ahead.pages_read() == 1; }));
  CHECK(cache.Find("good", 3, 0));
}

TEST_CASE("one page whose read throws does not keep the others from being read ahead", "[api][worklist]") {
  WorklistPageCache cache;
  auto good = [] {
    return std::function<WorklistPageCache::Read()>([] { return WorklistPageCache::Read{PageOf("[g]"), 1000}; });
  };
  cache.NoteAsked("good-1", good);
  cache.NoteAsked("bad", [] {
    return std::function<WorklistPageCache::Read()>([]() -> WorklistPageCache::Read { throw std::bad_alloc(); });
  });
  cache.NoteAsked("good-2", good);
  CHECK(cache.ReadAhead(2, 0) == 2);  // the most recently asked first: good-2, bad (thrown), good-1
  CHECK(cache.Find("good-1", 2, 0));
  CHECK(cache.Find("good-2", 2, 0));
}

TEST_CASE_METHOD(WorkflowFixture, "the index calls its tasks listener after the version moved, and holds one only",
                 "[workflow][worklist]") {
  ReceivedStudy study = Receive("zhuozhou", "P1", "CT");
  Promote();
  std::atomic<int> calls{0};
  std::atomic<uint64_t> seen{0};
  REQUIRE(index
              ->OnTasksChange([&] {
                seen = index->tasks_version();  // a reader woken here must find the change
                ++calls;
              })
              .ok());
  CHECK(index->OnTasksChange([] {}).code() == Status::Code::kConflict);  // a second is refused
  const uint64_t before = index->tasks_version();
  REQUIRE(worklist->Claim(study.study_instance_uid, "wang.li").ok());
  CHECK(calls == 1);  // the first listener, not replaced by the refused one
  CHECK(seen == before + 1);
  CHECK(index->tasks_version() == before + 1);
  REQUIRE(index->OnTasksChange(nullptr).ok());
  CHECK(index->OnTasksChange([] {}).ok());  // unset: a new one may come
  REQUIRE(index->OnTasksChange(nullptr).ok());

  // Two read-aheads on one index: the second is a wiring mistake, thrown.
  api->StartReadAhead(std::chrono::milliseconds(1));
  WorklistPageCache other;
  CHECK_THROWS_AS(WorklistReadAhead(
                      other, [&] { return index->tasks_version(); }, [] { return int64_t{0}; },
                      [&](std::function<void()> fn) { return worklist->OnChange(std::move(fn)); }),
                  std::logic_error);
}

TEST_CASE("a change between the read-ahead's construction and its thread's first look is read ahead",
          "[api][worklist]") {
  WorklistPageCache cache;
  cache.NoteAsked("a", [] {
    return std::function<WorklistPageCache::Read()>([] { return WorklistPageCache::Read{PageOf("[a]"), 1000}; });
  });
  // The constructor's look sees version 1; every later one (the thread's) sees 2, as when a change
  // commits before the thread first runs, however the threads are scheduled.
  std::atomic<int> looks{0};
  WorklistReadAhead ahead(
      cache, [&]() -> uint64_t { return looks++ == 0 ? 1 : 2; }, [] { return int64_t{0}; }, nullptr,
      std::chrono::milliseconds(1));
  CHECK(WaitFor([&] { return ahead.pages_read() == 1; }));
  CHECK(cache.Find("a", 2, 0));
}

TEST_CASE("more pages due than one read-ahead reads are all read while the version holds", "[api][worklist]") {
  WorklistPageCache cache;
  const size_t n = WorklistPageCache::kMaxReadAhead * 2 + 1;
  for (size_t i = 0; i < n; ++i) {
    cache.NoteAsked("k" + std::to_string(i), [] {
      return std::function<WorklistPageCache::Read()>([] { return WorklistPageCache::Read{PageOf("[k]"), 1000}; });
    });
  }
  std::atomic<uint64_t> version{1};
  WorklistReadAhead ahead(
      cache, [&] { return version.load(); }, [] { return int64_t{0}; }, nullptr, std::chrono::milliseconds(1));
  version = 2;  // one change, no other
  CHECK(WaitFor([&] { return ahead.pages_read() == n; }));
  for (size_t i = 0; i < n; ++i) CHECK(cache.Find("k" + std::to_string(i), 2, 0));
}
