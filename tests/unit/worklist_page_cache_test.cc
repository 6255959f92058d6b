// The worklist pages the API keeps (server/http/worklist_page_cache.h): asked again with nothing
// changed, the page is served without a read; after any change to a task, or once the time
// changes what a row shows, the very next request sees it.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "server/http/worklist_page_cache.h"
#include "server/store/sqlite.h"
#include "tests/unit/workflow_fixture.h"

using namespace teleread;
using nlohmann::json;
using teleread::test::ReceivedStudy;
using teleread::test::WorkflowFixture;

namespace {

const PeerCertificate kWang = test::CentreCertificate("wang.li", "radiologist");
const PeerCertificate kZhao = test::CentreCertificate("zhao.min", "radiologist");

struct PageFixture : WorkflowFixture {
  ReceivedStudy first = Receive("zhuozhou", "P1", "CT");
  ReceivedStudy second = Receive("zhuozhou", "P2", "CT");
  PageFixture() { Promote(); }

  HttpResponse Call(const PeerCertificate& who, const std::string& method, const std::string& target) {
    return api->Handle(HttpRequest{method, target, "", ""}, who);
  }
  json Page(const PeerCertificate& who = kWang, const std::string& filters = "") {
    const HttpResponse r = Call(who, "GET", "/api/v1/worklist?limit=50" + filters);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }
  // The page's row of `study`; null when it is not listed.
  json Row(const json& page, const ReceivedStudy& study) {
    for (const json& row : page["items"]) {
      if (row["study_instance_uid"] == study.study_instance_uid) return row;
    }
    return nullptr;
  }
  // Runs `sql` (its ?1 the study's UID) as one index write: a change made under the API's feet.
  Status ChangeInIndex(const std::string& sql, const ReceivedStudy& study) {
    return index->Write([&](Database& db) {
      Statement u(db.handle(), sql);
      u.Bind(1, study.study_instance_uid);
      return u.Run();
    });
  }
  int64_t Kept() {
    const std::string metrics = Call(kWang, "GET", "/metrics").body;
    const std::string name = "\nteleread_worklist_pages_kept_total ";
    const size_t at = metrics.find(name);
    REQUIRE(at != std::string::npos);
    return std::stoll(metrics.substr(at + name.size()));
  }
  // One more instance of `study`, in a new series, as a late sender would add it.
  void LateInstance(const ReceivedStudy& study) {
    samples::SeriesSpec spec;
    spec.patient_name = "Test^P1";
    spec.patient_id = "P1";
    spec.accession_number = "AP1";
    spec.study_instance_uid = study.study_instance_uid;
    spec.modality = "CT";
    spec.rows = spec.columns = 16;
    Result<std::vector<std::filesystem::path>> files = samples::WriteSeries(spec, dir.path() / "late");
    REQUIRE(files.ok());
    Result<InstanceSummary> s = ReadInstanceSummary(files->front());
    REQUIRE(s.ok());
    const std::filesystem::path temp = store->NewTempPath();
    std::filesystem::copy_file(files->front(), temp);
    StoreOutcome out = ingest->Store({temp, "zhuozhou_AE", "zhuozhou", s->sop_class_uid, s->sop_instance_uid, {}, {}});
    INFO(out.error_comment);
    REQUIRE(out.code == IngestCode::kStored);
  }
};

}  // namespace

TEST_CASE_METHOD(PageFixture, "a kept worklist page is never served after a claim, release, new task or late instance",
                 "[workflow][api][worklist]") {
  const json before = Page();
  REQUIRE(before["items"].size() == 2);
  REQUIRE(Row(Page(kZhao), first)["state"] == "waiting");  // kept: a stale page would show after the claim
  const int64_t kept = Kept();
  CHECK(Page() == before);
  CHECK(Kept() == kept + 1);  // served as kept: nothing changed

  // Claimed: the very next page shows it claimed, to the claimer and to everyone else.
  REQUIRE(Call(kWang, "POST", "/api/v1/studies/" + first.study_instance_uid + "/claim").status == 200);
  CHECK(Row(Page(), first)["state"] == "claimed");
  CHECK(Row(Page(), first)["claimed_by"] == "wang.li");
  CHECK(Row(Page(kZhao), first)["claimed_by"] == "wang.li");
  CHECK(Row(Page(kZhao), second)["state"] == "waiting");

  REQUIRE(Call(kWang, "POST", "/api/v1/studies/" + first.study_instance_uid + "/release").status == 200);
  CHECK(Row(Page(), first)["state"] == "waiting");
  CHECK(Row(Page(kZhao), first)["claimed_by"].is_null());

  // A new task is listed at once.
  const ReceivedStudy third = Receive("zhuozhou", "P3", "CT", "STAT");
  CHECK(Page()["items"].size() == 2);  // still receiving: no task yet
  Promote();
  const json with_third = Page();
  REQUIRE(with_third["items"].size() == 3);
  CHECK(with_third["items"][0]["study_instance_uid"] == third.study_instance_uid);  // STAT first

  // A late instance of a listed study shows in its counts.
  const json row = Row(Page(), first);
  LateInstance(first);
  const json late = Row(Page(), first);
  CHECK(late["instances"] == row["instances"].get<int64_t>() + 1);
  CHECK(late["series"] == row["series"].get<int64_t>() + 1);

  // A report: the study leaves the open worklist.
  REQUIRE(Call(kWang, "POST", "/api/v1/studies/" + second.study_instance_uid + "/claim").status == 200);
  REQUIRE(desk->Accept(second.study_instance_uid, Bytes(SignedReport(second, "wang.li")), "wang.li").ok());
  CHECK(Row(Page(), second).is_null());
  CHECK(Row(Page(kZhao), second).is_null());
}

TEST_CASE_METHOD(PageFixture, "a kept worklist page shows a lapsed claim and an overdue task as soon as the time comes",
                 "[workflow][api][worklist]") {
  REQUIRE(Call(kWang, "POST", "/api/v1/studies/" + first.study_instance_uid + "/claim").status == 200);
  const json claimed = Row(Page(), first);
  REQUIRE(claimed["state"] == "claimed");
  CHECK_FALSE(claimed["overdue"].get<bool>());
  const int64_t lease_expires = claimed["lease_expires_ms"].get<int64_t>();
  now_ms = lease_expires - 1;
  CHECK(Row(Page(), first)["state"] == "claimed");
  // No write in between: only the time says the lease is over.
  now_ms = lease_expires;
  CHECK(Row(Page(), first)["state"] == "waiting");
  CHECK(Row(Page(), first)["claimed_by"].is_null());

  const int64_t due = Row(Page(), second)["due_ms"].get<int64_t>();
  now_ms = due;
  CHECK_FALSE(Row(Page(), second)["overdue"].get<bool>());
  now_ms = due + 1;
  CHECK(Row(Page(), second)["overdue"].get<bool>());
}

TEST_CASE_METHOD(PageFixture, "each radiologist's worklist view is audited, kept page or not",
                 "[workflow][api][worklist][audit]") {
  const int64_t before = Count("audit_log", "action = 'list-worklist'");
  for (int i = 0; i < 3; ++i) Page();
  Page(kZhao);
  CHECK(Count("audit_log", "action = 'list-worklist' AND actor = 'wang.li'") == 3);
  CHECK(Count("audit_log", "action = 'list-worklist'") == before + 4);
}

TEST_CASE("the worklist pages kept stay under their byte bound and the least recently used go first",
          "[api][worklist]") {
  const size_t cap = 128 * 1024;  // ~15 pages: 4000 bytes of JSON and as much reserved for its deflate
  WorklistPageCache cache(cap);
  auto page = [](char c) { return WorklistPageCache::Page::Make(std::string(4000, c), 1); };
  cache.Store("first", 1, 1000, page('f'));
  for (int i = 0; i < 200; ++i) {
    cache.Store("page " + std::to_string(i), 1, 1000, page('x'));
    CHECK(cache.bytes() <= cap);
    REQUIRE(cache.Find("first", 1, 0));  // used between the others: kept
  }
  CHECK(cache.pages() < 20);
  CHECK(cache.pages() > 10);                // evicted one at a time, not cleared
  CHECK_FALSE(cache.Find("page 0", 1, 0));  // the least recently used went
  CHECK(cache.Find("page 199", 1, 0));
  CHECK(cache.Find("first", 1, 0)->items_json[0] == 'f');
}

TEST_CASE("a kept worklist page is counted by the memory it holds, its deflate made later included",
          "[api][worklist]") {
  WorklistPageCache cache;
  auto grown = std::make_shared<WorklistPageCache::Page>();
  grown->items_json.reserve(size_t{1} << 20);  // as json::dump can leave it: far more room than text
  grown->items_json = "[]";
  grown->rows = 0;
  cache.Store("grown", 1, 1000, grown);
  CHECK(cache.bytes() > (size_t{1} << 20));  // the room counted, not the 2 bytes
  // Page::Make gives the text back its room; the deflate (made on the first gzip caller) is counted
  // before it is made, so it never grows a kept page past what the cache counted.
  const std::string json(40'000, 'x');
  std::shared_ptr<const WorklistPageCache::Page> page =
      WorklistPageCache::Page::Make(json + std::string(30'000, 'y'), 1);
  CHECK(page->items_json.capacity() < page->items_json.size() + 64);
  WorklistPageCache fresh;
  fresh.Store("p", 1, 1000, page);
  const size_t counted = fresh.bytes();
  CHECK_FALSE(page->deflated());
  const DeflatedPart& gzip = page->Gzip();
  CHECK(page->deflated());
  CHECK(&page->Gzip() == &gzip);  // once
  CHECK(page->items_json.capacity() + gzip.blocks.capacity() + 200 <= counted);
}

TEST_CASE("an older version never replaces a newer kept worklist page", "[api][worklist]") {
  WorklistPageCache cache;
  auto page = [](const std::string& json) { return WorklistPageCache::Page::Make(json, 1); };
  cache.Store("k", 5, 1000, page("[5]"));
  cache.Store("k", 4, 1000, page("[4]"));  // a slower reader that began before the write
  REQUIRE(cache.Find("k", 5, 0));
  CHECK(cache.Find("k", 5, 0)->items_json == "[5]");
  CHECK_FALSE(cache.Find("k", 4, 0));
  cache.Store("k", 6, 1000, page("[6]"));
  CHECK(cache.Find("k", 6, 0)->items_json == "[6]");
}

TEST_CASE_METHOD(PageFixture, "kept worklist pages are per filter: modality, priority and member give their own pages",
                 "[workflow][api][worklist]") {
  const ReceivedStudy us = Receive("laishui", "P9", "US", "STAT");
  Promote();
  const std::vector<std::pair<std::string, size_t>> cases = {{"", 3},
                                                             {"&modality=US", 1},
                                                             {"&modality=CT", 2},
                                                             {"&priority=STAT", 1},
                                                             {"&member=laishui", 1},
                                                             {"&member=zhuozhou", 2},
                                                             {"", 3}};
  for (int round = 0; round < 2; ++round) {  // the second round is served kept
    for (const auto& [filters, rows] : cases) {
      INFO(filters << " round " << round);
      CHECK(Page(kWang, filters)["items"].size() == rows);
    }
  }
  CHECK(Page(kWang, "&modality=US")["items"][0]["study_instance_uid"] == us.study_instance_uid);
  // Free-text fields that would read alike joined by a separator: "CT\nzhuozhou" + no member is
  // not "CT" + member zhuozhou.
  REQUIRE(Page(kWang, "&modality=CT&member=zhuozhou")["items"].size() == 2);
  CHECK(Page(kWang, "&modality=CT%0Azhuozhou")["items"].empty());
  CHECK(Page(kWang, "&modality=CT%0Azhuozhou%0A&priority=")["items"].empty());
}

TEST_CASE_METHOD(PageFixture, "kept worklist pages stay per radiologist when one reads only some members",
                 "[workflow][api][worklist]") {
  // zhao.min reads laishui's studies only; wang.li reads everything.
  worklist = std::make_unique<Worklist>(
      stores->tasks, stores->audit, int64_t{config.reading.lease_minutes} * 60'000, [this] { return now_ms; },
      std::vector<Radiologist>{{"zhao.min", "Zhao^Min", "", {}, {"laishui"}}});
  api = std::make_unique<ReadingApi>(config, *worklist, stores->reads, *store, std::vector<MetricsSource>{}, desk.get(),
                                     outbox.get());
  const ReceivedStudy us = Receive("laishui", "P9", "US");
  Promote();
  for (int round = 0; round < 2; ++round) {  // the second round is served kept
    INFO("round " << round);
    const json wang = Page(kWang), zhao = Page(kZhao);
    CHECK(wang["items"].size() == 3);
    REQUIRE(zhao["items"].size() == 1);
    CHECK(zhao["items"][0]["study_instance_uid"] == us.study_instance_uid);
  }
  const int64_t kept = Kept();
  Page(kZhao);
  Page(kWang);
  CHECK(Kept() == kept + 2);
}

TEST_CASE_METHOD(PageFixture, "a change to a study that no task row shows is seen by the next worklist page",
                 "[workflow][api][worklist]") {
  REQUIRE(Row(Page(), first)["description"] != "Changed by the index");
  const int64_t kept = Kept();
  Page();
  REQUIRE(Kept() == kept + 1);
  // Only the studies row changes; its reading_tasks row does not.
  REQUIRE(ChangeInIndex("UPDATE studies SET study_description = 'Changed by the index' WHERE study_instance_uid = ?1",
                        first)
              .ok());
  CHECK(Row(Page(), first)["description"] == "Changed by the index");
  REQUIRE(ChangeInIndex("UPDATE patients SET patient_name = 'Renamed^P1' WHERE id = (SELECT patient_pk FROM "
                        "studies WHERE study_instance_uid = ?1)",
                        first)
              .ok());
  CHECK(Row(Page(), first)["patient_name"] == "Renamed^P1");
}

TEST_CASE_METHOD(PageFixture, "a change to a series of a study with a task ends the kept worklist page",
                 "[workflow][api][worklist]") {
  REQUIRE(Row(Page(), first)["body_part"] != "KNEE");
  const int64_t kept = Kept();
  Page();
  REQUIRE(Kept() == kept + 1);
  // Only a series row changes (found through series -> study -> task); no studies row does.
  REQUIRE(ChangeInIndex("UPDATE series SET body_part_examined = 'KNEE' WHERE study_pk = (SELECT id FROM studies "
                        "WHERE study_instance_uid = ?1)",
                        first)
              .ok());
  CHECK(Row(Page(), first)["body_part"] == "KNEE");
}

TEST_CASE_METHOD(PageFixture, "a kept worklist page is served up to the millisecond a row reads differently, not after",
                 "[workflow][api][worklist]") {
  REQUIRE(Call(kWang, "POST", "/api/v1/studies/" + first.study_instance_uid + "/claim").status == 200);
  json page = Page();
  // The times at which a row of this page reads differently, by the API's documented fields: a
  // lease's end, and just after a due time.
  std::set<int64_t> edges = {Row(page, first)["lease_expires_ms"].get<int64_t>()};
  for (const json& row : page["items"]) edges.insert(row["due_ms"].get<int64_t>() + 1);
  REQUIRE(edges.size() >= 2);
  for (const int64_t edge : edges) {
    INFO("edge " << edge);
    REQUIRE(edge > now_ms + 1);
    now_ms = edge - 1;
    int64_t kept = Kept();
    CHECK(Page() == page);      // nothing reads differently yet
    CHECK(Kept() == kept + 1);  // and it was the kept page: it did not end early
    now_ms = edge;
    kept = Kept();
    const json changed = Page();
    CHECK(Kept() == kept);  // read again: the kept page ended here
    CHECK(changed != page);
    page = changed;
  }
  CHECK(Row(page, first)["state"] == "waiting");
  CHECK(Row(page, first)["overdue"].get<bool>());
  CHECK(Row(page, second)["overdue"].get<bool>());
}

TEST_CASE("no two different filters or routings share a kept worklist page's key", "[api][worklist]") {
  // Text that would join alike with a separator, a length prefix or nothing between fields.
  const std::vector<std::string> texts = {"", "a", "1", "1:", ":a", "\n", "a\n", "\na", "1:a", "0"};
  const std::vector<std::vector<std::string>> lists = {{},    {""},    {"", ""},   {"a"},
                                                       {"1"}, {"1:a"}, {"a", "1"}, {"1", "a"}};
  std::map<std::string, std::string> seen;  // key -> the fields it was made from
  size_t made = 0;
  for (const std::vector<std::string>& modalities : lists) {
    for (const std::vector<std::string>& members : lists) {
      for (const std::string& modality : texts) {
        for (const std::string& member : texts) {
          for (const std::string& priority : texts) {
            for (const int limit : {1, 50}) {
              WorklistFilter f;
              f.modality = modality;
              f.member_id = member;
              f.priority = priority;
              f.limit = limit;
              f.readable_modalities = modalities;
              f.readable_members = members;
              const std::string fields = json{modalities, members, modality, member, priority, limit}.dump();
              const auto [at, fresh] = seen.emplace(WorklistPageCache::Key(f), fields);
              INFO(fields << " has the key of " << at->second);
              REQUIRE(fresh);
              CHECK(WorklistPageCache::Key(f) == at->first);  // the same fields, the same key
              ++made;
            }
          }
        }
      }
    }
  }
  CHECK(seen.size() == made);
}

TEST_CASE_METHOD(PageFixture,
                 "readers routed alike share one kept worklist page and each view is audited for its reader",
                 "[workflow][api][worklist]") {
  // Routing as configured: wang.li reads CT, MR, CR, DX; zhao.min everything; a second CT reader
  // routed as wang.li is.
  Radiologist twin = config.radiologists.front();
  REQUIRE(twin.id == "wang.li");
  twin.id = "chen.jie";
  twin.certificate_subject = "CN=chen.jie,OU=radiologist,O=Lixian Regional Imaging Reading Centre";
  config.radiologists.push_back(twin);
  worklist = std::make_unique<Worklist>(
      stores->tasks, stores->audit, int64_t{config.reading.lease_minutes} * 60'000, [this] { return now_ms; },
      config.radiologists);
  api = std::make_unique<ReadingApi>(config, *worklist, stores->reads, *store, std::vector<MetricsSource>{}, desk.get(),
                                     outbox.get());
  const PeerCertificate chen{"CN=chen.jie,OU=radiologist,O=Lixian Regional Imaging Reading Centre", "chen.jie",
                             "radiologist"};
  const ReceivedStudy ecg = Receive("zhuozhou", "P9", "ECG");  // not among wang.li's modalities
  Promote();
  const json wang = Page(kWang);
  CHECK(wang["items"].size() == 2);
  CHECK(Row(wang, ecg) == nullptr);
  int64_t kept = Kept();
  const json other = Page(chen);
  CHECK(Kept() == kept + 1);  // wang.li's read served chen.jie
  CHECK(other["items"] == wang["items"]);
  kept = Kept();
  const json zhao = Page(kZhao);  // routed otherwise: read for zhao.min
  CHECK(Kept() == kept);
  CHECK(zhao["items"].size() == 3);
  CHECK(Row(zhao, ecg) != nullptr);
  CHECK(Count("audit_log", "actor = 'chen.jie' AND action = 'list-worklist'") == 1);
  CHECK(Count("audit_log", "actor = 'wang.li' AND action = 'list-worklist'") == 1);
}

TEST_CASE_METHOD(PageFixture, "kept worklist pages are per page size", "[workflow][api][worklist]") {
  for (int round = 0; round < 2; ++round) {  // the second round is served kept
    INFO("round " << round);
    CHECK(Page(kWang, "")["items"].size() == 2);  // limit=50
    CHECK(json::parse(Call(kWang, "GET", "/api/v1/worklist?limit=1").body)["items"].size() == 1);
  }
}

TEST_CASE_METHOD(PageFixture, "objects of a study still being received (no task yet) do not end a kept worklist page",
                 "[workflow][api][worklist]") {
  const json page = Page();
  const uint64_t version = index->tasks_version();
  const ReceivedStudy incoming = Receive("laishui", "P7", "CT");  // new patient, study, series, instances
  CHECK(index->tasks_version() == version);
  int64_t kept = Kept();
  CHECK(Page() == page);
  CHECK(Kept() == kept + 1);  // served kept: nothing it shows changed
  // Its task, when it comes, ends the page at once.
  Promote();
  CHECK(index->tasks_version() > version);
  kept = Kept();
  CHECK(Row(Page(), incoming)["state"] == "waiting");
  CHECK(Kept() == kept);
}

namespace {

std::shared_ptr<const WorklistPageCache::Page> PageOf(const std::string& items) {
  return WorklistPageCache::Page::Make(items, 1);
}

// Until `done` holds, or 10 s: then the test fails on what it waited for.
template <typename Done>
void WaitFor(Done done) {
  for (int i = 0; i < 10'000 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

}  // namespace

TEST_CASE("a worklist page missing for many callers at once is read once and the others wait for it",
          "[api][worklist]") {
  WorklistPageCache cache(WorklistPageCache::kDefaultMaxBytes, std::chrono::seconds(60));
  constexpr int kCallers = 8;
  std::atomic<int> reads{0};
  auto read = [&] {
    ++reads;
    // The read lasts until every other caller waits for it.
    WaitFor([&] { return cache.waiting() == kCallers - 1; });
    return WorklistPageCache::Read{PageOf("[1]"), 1000};
  };
  std::atomic<int> waited{0};
  std::vector<std::thread> callers;
  std::vector<std::string> got(kCallers);
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&, i] {
      bool w = false;
      auto page = cache.FindOrRead("k", 7, 0, read, &w);
      got[static_cast<size_t>(i)] = page ? page->items_json : "";
      waited += w;
    });
  }
  for (std::thread& t : callers) t.join();
  CHECK(reads == 1);
  CHECK(waited == kCallers - 1);
  CHECK(cache.waiting() == 0);
  for (const std::string& g : got) CHECK(g == "[1]");
  CHECK(cache.FindOrRead("k", 7, 999, read) != nullptr);
  CHECK(reads == 1);  // kept
}

TEST_CASE("a kept worklist page past its validity or version is read again", "[api][worklist]") {
  WorklistPageCache cache;
  int reads = 0;
  auto read = [&] {
    ++reads;
    return WorklistPageCache::Read{PageOf("[" + std::to_string(reads) + "]"), 1000};
  };
  CHECK(cache.FindOrRead("k", 7, 0, read)->items_json == "[1]");
  CHECK(cache.FindOrRead("k", 7, 999, read)->items_json == "[1]");
  CHECK(cache.FindOrRead("k", 7, 1000, read)->items_json == "[2]");  // past its validity
  CHECK(cache.FindOrRead("k", 8, 0, read)->items_json == "[3]");     // a new version
  CHECK(reads == 3);
}

// One read under way, held until released, and the callers started against it.
struct HeldRead {
  WorklistPageCache cache{WorklistPageCache::kDefaultMaxBytes, std::chrono::seconds(60)};
  std::atomic<bool> release{false};
  std::atomic<int> reads{0};
  std::thread lead;
  HeldRead(uint64_t version, std::function<WorklistPageCache::Read()> result) {
    lead = std::thread([this, version, result] {
      try {
        cache.FindOrRead("k", version, 0, [&] {
          ++reads;
          WaitFor([&] { return release.load(); });
          return result();
        });
      } catch (const std::exception&) {
      }
    });
    WaitFor([&] { return reads == 1; });
  }
  ~HeldRead() {
    release = true;
    if (lead.joinable()) lead.join();
  }
};

TEST_CASE("when the read others wait for fails or throws, they read on their own and keep that page",
          "[api][worklist]") {
  for (const bool throws : {false, true}) {
    INFO((throws ? "the read throws" : "the read finds nothing"));
    HeldRead held(7, [throws]() -> WorklistPageCache::Read {
      if (throws) throw std::runtime_error("no memory");
      return {};
    });
    std::atomic<int> own{0};
    bool waited = false;
    std::thread waiter([&] {
      auto page = held.cache.FindOrRead(
          "k", 7, 0,
          [&] {
            ++own;
            return WorklistPageCache::Read{PageOf("[own]"), 1000};
          },
          &waited);
      CHECK((page && page->items_json == "[own]"));
    });
    WaitFor([&] { return held.cache.waiting() == 1; });
    CHECK(held.cache.waiting() == 1);
    held.release = true;
    waiter.join();
    CHECK(own == 1);
    CHECK_FALSE(waited);
    // The flight ended with the failed read, and the waiter's page was kept: no one reads again.
    int later = 0;
    CHECK(held.cache
              .FindOrRead("k", 7, 0,
                          [&] {
                            ++later;
                            return WorklistPageCache::Read{PageOf("[later]"), 1000};
                          })
              ->items_json == "[own]");
    CHECK(later == 0);
  }
}

TEST_CASE("a caller at another version does not join a read under way", "[api][worklist]") {
  HeldRead held(7, [] { return WorklistPageCache::Read{PageOf("[7]"), 1000}; });
  int own = 0;
  auto read = [&] {
    ++own;
    return WorklistPageCache::Read{PageOf("[other]"), 1000};
  };
  CHECK(held.cache.FindOrRead("k", 8, 0, read)->items_json == "[other]");  // newer: reads, takes the flight
  CHECK(held.cache.FindOrRead("k", 6, 0, read)->items_json == "[other]");  // older: reads apart
  CHECK(own == 2);
  CHECK(held.cache.waiting() == 0);
  held.release = true;
  held.lead.join();
  // Version 7's page did not replace version 8's.
  CHECK(held.cache.FindOrRead("k", 8, 0, read)->items_json == "[other]");
  CHECK(own == 2);
}

TEST_CASE("a waiter past the validity of the page it waited for reads again", "[api][worklist]") {
  HeldRead held(7, [] { return WorklistPageCache::Read{PageOf("[old]"), 500}; });
  std::string got;
  bool waited = false;
  std::thread waiter([&] {
    auto page = held.cache.FindOrRead(
        "k", 7, 600,
        [] {
          return WorklistPageCache::Read{PageOf("[new]"), 2000};
        },
        &waited);
    got = page ? page->items_json : "";
  });
  WaitFor([&] { return held.cache.waiting() == 1; });
  held.release = true;
  waiter.join();
  CHECK(got == "[new]");
  CHECK_FALSE(waited);
}

TEST_CASE("a waiter does not wait past its bound for a slow read", "[api][worklist]") {
  WorklistPageCache cache(WorklistPageCache::kDefaultMaxBytes, std::chrono::milliseconds(50));
  std::atomic<bool> release{false}, started{false};
  std::thread lead([&] {
    cache.FindOrRead("k", 7, 0, [&] {
      started = true;
      WaitFor([&] { return release.load(); });
      return WorklistPageCache::Read{PageOf("[slow]"), 1000};
    });
  });
  WaitFor([&] { return started.load(); });
  const auto t0 = std::chrono::steady_clock::now();
  auto page = cache.FindOrRead("k", 7, 0, [] { return WorklistPageCache::Read{PageOf("[own]"), 1000}; });
  const auto waited = std::chrono::steady_clock::now() - t0;
  release = true;
  lead.join();
  CHECK(page->items_json == "[own]");
  CHECK(waited < std::chrono::seconds(5));
}
