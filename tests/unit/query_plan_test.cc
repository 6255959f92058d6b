// Member-scoped C-FIND plans: a member's query must be driven by its selective key through an
// index that leads with the member, never by the member's whole study list, with and without
// the statistics the index keeps; and the statements those queries keep per connection.
#include <sqlite3.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "server/store/index.h"
#include "server/store/query.h"
#include "server/store/schema.h"
#include "server/store/sqlite.h"
#include "server/store/task_sql.h"
#include "server/store/wal_vfs.h"
#include "tests/support/process.h"

using namespace teleread;

namespace {

// 3 members x 1,000 studies of 4 instances, in the proportions of a real index: many studies per
// member, one per patient, a few per day; 12,000 instances, enough for measured statistics.
void FillIndex(const std::filesystem::path& db_path) {
  auto db = Database::Open(db_path, false);
  REQUIRE(db.ok());
  Database& d = *db.value();
  REQUIRE(d.Exec("BEGIN").ok());
  const char* members[] = {"m0", "m1", "m2"};
  Statement patient(d.handle(),
                    "INSERT INTO patients (id, member_id, patient_id, issuer_of_patient_id, patient_name, birth_date, "
                    "sex, other_patient_ids) VALUES (?1, ?2, ?3, '', ?4, '', '', '')");
  Statement name_key(d.handle(), "INSERT INTO patient_name_keys (patient_pk, name_key, member_id) VALUES (?1, ?2, ?3)");
  Statement study(d.handle(),
                  "INSERT INTO studies (id, patient_pk, member_id, study_instance_uid, study_date, study_time, "
                  "accession_number, study_id, study_description, referring_physician_name, institution_name, "
                  "priority, patient_age, specific_character_set, first_received_ms, last_received_ms) "
                  "VALUES (?1, ?1, ?2, ?3, ?4, '', ?5, '', '', '', '', '', '', '', 0, 0)");
  Statement series(
      d.handle(),
      "INSERT INTO series (id, study_pk, series_instance_uid, modality, series_number, series_description, "
      "body_part_examined) VALUES (?1, ?1, ?2, 'CT', '1', '', '')");
  Statement instance(d.handle(),
                     "INSERT INTO instances (series_pk, sop_instance_uid, sop_class_uid, instance_number, "
                     "transfer_syntax_uid, size_bytes, path, calling_ae_title, received_ms) "
                     "VALUES (?1, ?2, '', '', '', 0, ?2, '', 0)");
  for (int n = 0; n < 3000; ++n) {
    const int64_t pk = n + 1;
    const std::string m = members[n % 3];
    REQUIRE(patient.Bind(1, pk)
                .Bind(2, m)
                .Bind(3, "P" + std::to_string(n))
                .Bind(4, "ZHANG^WEI" + std::to_string(n))
                .Run()
                .ok());
    REQUIRE(name_key.Bind(1, pk).Bind(2, "ZHANG^WEI" + std::to_string(n)).Bind(3, m).Run().ok());
    const std::string date = "2020" + std::to_string(1001 + n % 300).substr(1);  // 300 dates
    REQUIRE(study.Bind(1, pk)
                .Bind(2, m)
                .Bind(3, "1.2." + std::to_string(n))
                .Bind(4, date)
                .Bind(5, "A" + std::to_string(n))
                .Run()
                .ok());
    REQUIRE(series.Bind(1, pk).Bind(2, "1.3." + std::to_string(n)).Run().ok());
    for (int k = 0; k < 4; ++k) {
      REQUIRE(instance.Bind(1, pk).Bind(2, "1.4." + std::to_string(n) + "." + std::to_string(k)).Run().ok());
    }
  }
  REQUIRE(d.Exec("COMMIT").ok());
}

// The first column of the first row `sql` reads; "<none>" without one.
std::string FirstText(Database& d, const std::string& sql) {
  Statement q(d.handle(), sql);
  return q.Step().value() ? q.Text(0) : std::string("<none>");
}

// An index with the server's schema, filled as FillIndex does, in `dir`.
std::filesystem::path FilledIndex(const test::ScratchDir& dir) {
  const std::filesystem::path db_path = dir.path() / "index.sqlite";
  { REQUIRE(Index::Open(db_path).ok()); }  // the schema, as the server creates it
  FillIndex(db_path);
  return db_path;
}

}  // namespace

TEST_CASE("member-scoped C-FIND is driven by the selective key within the member", "[store][plan]") {
  test::ScratchDir dir;
  const std::filesystem::path db_path = FilledIndex(dir);
  QueryEngine engine(db_path);

  auto plan = [&](QrLevel level, std::vector<QrKey> keys) {
    FindRequest r;
    r.level = level;
    r.keys = std::move(keys);
    r.member_scope = "m1";
    auto p = engine.ExplainFind(r);
    REQUIRE(p.ok());
    return p.value();
  };
  auto check = [&](const std::string& p, const std::string& search) {
    INFO(p);
    CHECK_THAT(p, Catch::Contains(search));
    CHECK_THAT(p, !Catch::Contains("SCAN"));
    // The member alone as the search key: its whole study list, the plan this test exists for.
    CHECK_FALSE(std::regex_search(p, std::regex(R"(\(member_id=\?\))")));
  };
  auto check_all = [&] {
    check(plan(QrLevel::kStudy, {{0x00100020, "P1"}}), "sqlite_autoindex_patients_1 (member_id=? AND patient_id=?)");
    check(plan(QrLevel::kStudy, {{0x00080050, "A1"}}), "studies_member_accession (member_id=? AND accession_number=?)");
    check(plan(QrLevel::kStudy, {{0x00080050, "A12*"}}),
          "studies_member_accession (member_id=? AND accession_number>? AND accession_number<?)");
    check(plan(QrLevel::kStudy, {{0x00100020, "P12?"}}),
          "sqlite_autoindex_patients_1 (member_id=? AND patient_id>? AND patient_id<?)");
    check(plan(QrLevel::kStudy, {{0x00100010, "ZHANG^WEI12*"}}),
          "patient_name_keys_member_key (member_id=? AND name_key>? AND name_key<?)");
    check(plan(QrLevel::kStudy, {{0x0020000D, "1.2.1"}}), "sqlite_autoindex_studies_1 (study_instance_uid=?)");
    check(plan(QrLevel::kStudy, {{0x00080020, "20200101-20200102"}}),
          "studies_member_date (member_id=? AND study_date>? AND study_date<?)");
    check(plan(QrLevel::kPatient, {{0x00100020, "P1"}}), "sqlite_autoindex_patients_1 (member_id=? AND patient_id=?)");
    check(plan(QrLevel::kPatient, {{0x00100010, "ZHANG^WEI12*"}}),
          "patient_name_keys_member_key (member_id=? AND name_key>? AND name_key<?)");
  };
  auto member_date_stat = [&] {
    auto db = Database::Open(db_path, true);
    REQUIRE(db.ok());
    Statement stats(db.value()->handle(), "SELECT stat FROM sqlite_stat1 WHERE idx = 'studies_member_date'");
    REQUIRE(stats.Step().value());
    return stats.Text(0);
  };
  SECTION("with the proportions seeded while the index was too small to measure") {
    check_all();
    CHECK(member_date_stat() == "100000 10000 3");
  }
  SECTION("with the statistics measured when the server starts on it") {
    { REQUIRE(Index::Open(db_path).ok()); }
    check_all();
    CHECK(member_date_stat() != "100000 10000 3");
  }
}

TEST_CASE("the quiet-study sweep reads only the studies awaiting a task, which arrivals do not rewrite",
          "[store][plan]") {
  test::ScratchDir dir;
  const std::filesystem::path db_path = FilledIndex(dir);
  auto db = Database::Open(db_path, false);
  REQUIRE(db.ok());
  Database& d = *db.value();
  REQUIRE(d.Exec("UPDATE studies SET task_created = 1 WHERE id > 10").ok());
  auto plan_of = [&](const std::string& sql) {
    Statement q(d.handle(), "EXPLAIN QUERY PLAN " + sql);
    std::string plan;
    while (q.Step().value()) plan += q.Text(3) + "\n";
    return plan;
  };
  auto check_sweep = [&] {
    // The sweep's own statement (Index::PromoteQuietStudies) and the flag update.
    for (const std::string& sql :
         {std::string("UPDATE studies SET task_created = 1 WHERE task_created = 0 AND last_received_ms <= 5"),
          InsertTasksSql(TaskPolicy{}, "task_created = 0 AND last_received_ms <= ?2")}) {
      const std::string p = plan_of(sql);
      INFO(p);
      CHECK_THAT(p, Catch::Contains("studies_awaiting_task"));
      CHECK_THAT(p, !Catch::Contains("SCAN studies\n"));
    }
  };
  check_sweep();
  { REQUIRE(Index::Open(db_path).ok()); }  // measured statistics
  REQUIRE(d.Exec("ANALYZE sqlite_schema").ok());
  check_sweep();

  // An instance's arrival moves last_received_ms: one page (the study's row) goes to the WAL.
  Statement bump(d.handle(),
                 "UPDATE studies SET num_instances = num_instances + 1, last_received_ms = MAX(last_received_ms, ?2) "
                 "WHERE id = ?1");
  for (int64_t study : {int64_t{3}, int64_t{2000}}) {
    INFO("study " << study);
    WalVfsCounters before = WalVfsCountersNow();
    REQUIRE(bump.Bind(1, study).Bind(2, 1000 + study).Run().ok());
    WalVfsCounters after = WalVfsCountersNow();
    CHECK(after.wal_commits - before.wal_commits == 1);
    CHECK(after.wal_frames - before.wal_frames == 1);
  }
}

TEST_CASE("a version-8 index with data and measured statistics migrates to the task_created index", "[store][plan]") {
  test::ScratchDir dir;
  const std::filesystem::path db_path = FilledIndex(dir);
  auto db = Database::Open(db_path, false);
  REQUIRE(db.ok());
  Database& d = *db.value();
  auto text = [&](const std::string& sql) { return FirstText(d, sql); };
  const std::string studies = text("SELECT count(*) FROM studies");
  // Back to version 8: its index, measured, plus a stat row only the old index could have.
  REQUIRE(d.Exec("DROP INDEX studies_awaiting_task; DROP INDEX reading_tasks_lease;"
                 "CREATE INDEX studies_awaiting_task ON studies (last_received_ms) WHERE task_created = 0;"
                 "ANALYZE; UPDATE sqlite_stat1 SET stat = '777 777' WHERE idx = 'studies_awaiting_task';"
                 "DELETE FROM schema_version; INSERT INTO schema_version (version) VALUES (8)")
              .ok());
  REQUIRE(text("SELECT stat FROM sqlite_stat1 WHERE idx = 'studies_awaiting_task'") == "777 777");
  { REQUIRE(Index::Open(db_path).ok()); }
  CHECK(text("SELECT max(version) FROM schema_version") == std::to_string(LatestSchemaVersion()));
  const std::string def = text("SELECT sql FROM sqlite_schema WHERE name = 'studies_awaiting_task'");
  CHECK_THAT(def, Catch::Contains("(task_created)"));
  CHECK_THAT(def, !Catch::Contains("last_received_ms"));
  CHECK(text("SELECT count(*) FROM sqlite_stat1 WHERE idx = 'studies_awaiting_task'") == "1");
  CHECK(text("SELECT stat FROM sqlite_stat1 WHERE idx = 'studies_awaiting_task'") != "777 777");
  CHECK(text("SELECT count(*) FROM studies") == studies);
  CHECK(text("SELECT count(*) FROM sqlite_schema WHERE name = 'reading_tasks_lease'") == "1");
  CHECK(text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("an index opened for reading beside the server is neither migrated nor measured", "[store][plan]") {
  test::ScratchDir dir;
  const std::filesystem::path db_path = FilledIndex(dir);
  { REQUIRE(Index::Open(db_path).ok()); }  // the server's start: measured statistics
  auto db = Database::Open(db_path, false);
  REQUIRE(db.ok());
  Database& d = *db.value();
  auto text = [&](const std::string& sql) { return FirstText(d, sql); };
  const std::string stat = "SELECT stat FROM sqlite_stat1 WHERE idx = 'studies_member_date'";
  REQUIRE(d.Exec("UPDATE sqlite_stat1 SET stat = '777 777 7' WHERE idx = 'studies_member_date'").ok());
  {
    Result<std::unique_ptr<Index>> index = Index::OpenExisting(db_path);
    REQUIRE(index.ok());
    Result<IndexCounts> counts = index.value()->Counts();
    REQUIRE(counts.ok());
    CHECK(counts->studies == 3000);
  }
  // The statistics the running server plans with, not measured again from another process.
  CHECK(text(stat) == "777 777 7");
  // An older schema (version 9: without the lease index) is left to the server to migrate.
  REQUIRE(d.Exec("DROP INDEX reading_tasks_lease; DELETE FROM schema_version; "
                 "INSERT INTO schema_version (version) VALUES (9)")
              .ok());
  Result<std::unique_ptr<Index>> old = Index::OpenExisting(db_path);
  REQUIRE_FALSE(old.ok());
  CHECK_THAT(old.status().message(), Catch::Contains("start teleread-server on it once to migrate it"));
  CHECK(text("SELECT max(version) FROM schema_version") == "9");
  CHECK(text("SELECT count(*) FROM sqlite_schema WHERE name = 'reading_tasks_lease'") == "0");
  // A newer one, and a database that is not an index.
  REQUIRE(d.Exec("UPDATE schema_version SET version = " + std::to_string(LatestSchemaVersion() + 1)).ok());
  CHECK_THAT(Index::OpenExisting(db_path).status().message(), Catch::Contains("use the teleread-server that wrote it"));
  { REQUIRE(Database::Open(dir.path() / "other.sqlite", false).ok()); }
  CHECK_THAT(Index::OpenExisting(dir.path() / "other.sqlite").status().message(),
             Catch::Contains("is not a TeleRead index"));
  CHECK(Index::OpenExisting(dir.path() / "none.sqlite").status().code() == Status::Code::kNotFound);
}

TEST_CASE("the sweep of expired claims reads the claims whose lease ended, not every claim", "[store][plan]") {
  test::ScratchDir dir;
  const std::filesystem::path db_path = FilledIndex(dir);
  auto db = Database::Open(db_path, false);
  REQUIRE(db.ok());
  Database& d = *db.value();
  // 3,000 claims, their leases ending a millisecond apart; the first 10 ended by 1,009.
  REQUIRE(d.Exec("INSERT INTO reading_tasks (study_pk, state, priority, complete_ms, updated_ms, claimed_by, "
                 "claimed_ms, lease_expires_ms) SELECT id, 'claimed', 'ROUTINE', 0, 0, 'wang.li', 0, 1000 + id - 1 "
                 "FROM studies; ANALYZE")
              .ok());
  Statement plan(d.handle(), std::string("EXPLAIN QUERY PLAN ") + kExpireLeasesSql);
  std::string p;
  while (plan.Step().value()) p += plan.Text(3) + "\n";
  INFO(p);
  CHECK_THAT(p, Catch::Contains("reading_tasks_lease (lease_expires_ms<?)"));
  sqlite3_stmt* sweep = nullptr;
  REQUIRE(sqlite3_prepare_v2(d.handle(), kExpireLeasesSql, -1, &sweep, nullptr) == SQLITE_OK);
  sqlite3_bind_int64(sweep, 1, 1009);
  CHECK(sqlite3_step(sweep) == SQLITE_DONE);
  CHECK(d.Changes() == 10);
  // Its steps: about the ten rows' (~900), not the 3,000 claims' a read of every claim takes (~16,000).
  CHECK(sqlite3_stmt_status(sweep, SQLITE_STMTSTATUS_VM_STEP, 0) < 3000);
  sqlite3_finalize(sweep);
  Statement waiting(d.handle(), "SELECT COUNT(*), MIN(expired_claim_by) FROM reading_tasks WHERE state = 'waiting'");
  REQUIRE(waiting.Step().value());
  CHECK(waiting.Int(0) == 10);
  CHECK(waiting.Text(1) == "wang.li");
}

TEST_CASE("a wildcard on an indexed key matches exactly what SQLite's GLOB of the pattern matches", "[store]") {
  test::ScratchDir dir;
  const std::filesystem::path db_path = FilledIndex(dir);
  auto db = Database::Open(db_path, false);
  REQUIRE(db.ok());
  Statement add(db.value()->handle(),
                "INSERT INTO patients (member_id, patient_id, issuer_of_patient_id, patient_name, birth_date, sex, "
                "other_patient_ids) VALUES ('m0', ?1, '', 'X', '', '', '')");
  // Literal brackets, multi-byte UTF-8 (e-acute, e-circumflex), 0xFF bytes, a literal '?'.
  for (const char* id : {"X[1]", "X[2", "X1",
                         "X\xC3\xA9"
                         "1",
                         "X\xC3\xA9", "X\xC3\xAA", "X\xFF",
                         "X\xFF\xFF"
                         "1",
                         "Y", "X?", "W"}) {
    REQUIRE(add.Bind(1, id).Run().ok());
  }
  QueryEngine engine(db_path);
  auto ids = [&](const std::string& pattern) {
    FindRequest r;
    r.level = QrLevel::kPatient;
    r.member_scope = "m0";
    r.keys = {{0x00100020, pattern}};
    Result<std::unique_ptr<FindCursor>> cursor = engine.Find(r);
    REQUIRE(cursor.ok());
    std::set<std::string> out;
    FindRow row;
    for (;;) {
      Result<bool> more = cursor.value()->Next(&row);
      REQUIRE(more.ok());
      if (!more.value()) break;
      for (const auto& [tag, value] : row) out.insert(value);
    }
    return out;
  };
  // GLOB itself: `+` keeps SQLite from turning the pattern's head into a range of its own, which
  // it takes as the whole match for a pattern like "X\xC3*" (GLOB reads U+FFFD for the stray byte,
  // and so matches "X\xFF" and not "X\xC3\xA9").
  auto globbed = [&](const std::string& glob) {
    Statement q(db.value()->handle(), "SELECT patient_id FROM patients WHERE member_id = 'm0' AND +patient_id GLOB ?1");
    q.Bind(1, glob);
    std::set<std::string> out;
    while (q.Step().value()) out.insert(q.Text(0));
    return out;
  };
  // The DICOM pattern, and the same as a GLOB pattern ('[' literal).
  const std::pair<std::string, std::string> patterns[] = {
      {"X[*", "X[[]*"},
      {"X\xC3\xA9*", "X\xC3\xA9*"},
      {"X\xC3*", "X\xC3*"},
      {"X\xFF*", "X\xFF*"},
      {"X\xFF\xFF*", "X\xFF\xFF*"},
      {"X?", "X?"},
      {"*1", "*1"},
      {"?", "?"},
      {"X*", "X*"},
  };
  for (const auto& [dicom, glob] : patterns) {
    INFO(dicom);
    const std::set<std::string> expected = globbed(glob);
    CHECK(ids(dicom) == expected);
  }
  CHECK(ids("X[*").size() == 2);
  CHECK(ids("X\xFF*").size() == 2);
  CHECK(ids("X*").size() == 9);
}

TEST_CASE("a C-FIND's statement is kept by its connection and asked again with fresh values", "[store]") {
  test::ScratchDir dir;
  const std::filesystem::path db_path = FilledIndex(dir);
  auto pool = ReaderPool::Create(db_path, 1);  // one connection: the one every query used
  const QueryEngine engine(pool);
  auto kept = [&] {
    Result<PooledReader> db = pool->Take();
    REQUIRE(db.ok());
    return db.value()->kept_statements();
  };
  // The highest count of one statement the connection holds: runs (a kept one counts every query
  // of its form) or fresh prepares (SQLITE_STMTSTATUS_REPREPARE).
  auto most = [&](int counter = SQLITE_STMTSTATUS_RUN) {
    Result<PooledReader> db = pool->Take();
    REQUIRE(db.ok());
    int top = 0;
    for (sqlite3_stmt* s = sqlite3_next_stmt(db.value()->handle(), nullptr); s;
         s = sqlite3_next_stmt(db.value()->handle(), s)) {
      top = std::max(top, sqlite3_stmt_status(s, counter, 0));
    }
    return top;
  };
  auto request = [](uint32_t tag, const std::string& value) {
    FindRequest r;
    r.level = QrLevel::kStudy;
    r.member_scope = "m0";
    r.keys = {{tag, value}, {0x0020000D, ""}};
    return r;
  };
  // The study UIDs a request matches, read to the end or only the first `limit`.
  auto uids = [&](const FindRequest& r, size_t limit = SIZE_MAX) {
    Result<std::unique_ptr<FindCursor>> cursor = engine.Find(r);
    REQUIRE(cursor.ok());
    std::vector<std::string> out;
    FindRow row;
    while (out.size() < limit) {
      Result<bool> more = cursor.value()->Next(&row);
      REQUIRE(more.ok());
      if (!more.value()) break;
      for (const auto& [tag, value] : row) {
        if (tag == 0x0020000D) out.push_back(value);
      }
    }
    return out;
  };
  CHECK(uids(request(0x00100020, "P3")) == std::vector<std::string>{"1.2.3"});
  const size_t forms = kept();
  CHECK(forms >= 1);
  // The same form with other values: the kept statement, bound afresh.
  CHECK(uids(request(0x00100020, "P6")) == std::vector<std::string>{"1.2.6"});
  CHECK(uids(request(0x00100020, "P4")).empty());  // m1's patient: out of m0's scope
  CHECK(kept() == forms);
  CHECK(most() == 3);
  // Left after its first match, then asked again: from the start, every match.
  FindRequest day = request(0x00080020, "2020001");  // FillIndex's dates: n % 300 == 0
  const std::vector<std::string> whole = uids(day);
  REQUIRE(whole.size() > 1);
  CHECK(uids(day, 1).size() == 1);
  CHECK(uids(day) == whole);
  CHECK(kept() == forms + 1);  // a second form
  // A list of values: kept up to 16 values bound in all (the member is one), prepared apart past it.
  auto list = [&](int values) {
    FindRequest r = request(0x0020000D, "");
    for (int n = 0; n < values; ++n) r.keys[0].value += (n ? "\\1.2." : "1.2.") + std::to_string(3 * n);
    r.keys.pop_back();
    return r;
  };
  CHECK(uids(list(15)).size() == 15);
  CHECK(kept() == forms + 2);
  CHECK(uids(list(16)).size() == 16);
  CHECK(kept() == forms + 2);
  // A retrieve's selection likewise, its values bound afresh.
  FindRequest study = request(0x0020000D, "1.2.3");
  study.keys.pop_back();
  for (const char* uid : {"1.2.3", "1.2.9"}) {
    study.keys[0].value = uid;
    Result<std::vector<RetrieveItem>> items = engine.Retrieve(study);
    REQUIRE(items.ok());
    REQUIRE(items->size() == 4);
    CHECK(items->front().sop_instance_uid.rfind(std::string("1.4.") + (uid + 4) + ".", 0) == 0);
  }
  CHECK(kept() == forms + 3);
  // A wildcard form likewise: no pattern prepares it again, as SQLite's own use of a bound
  // pattern's head would, each time.
  auto names = [&](const std::string& pattern) {
    std::vector<std::string> out = uids(request(0x00100010, pattern));
    std::sort(out.begin(), out.end());
    return out;
  };
  CHECK(names("ZHANG^WEI299*") == std::vector<std::string>{"1.2.2991", "1.2.2994", "1.2.2997"});
  CHECK(names("ZHANG^WEI298*") == std::vector<std::string>{"1.2.2982", "1.2.2985", "1.2.2988"});
  CHECK(names("ZHANG^WEI3?") == std::vector<std::string>{"1.2.30", "1.2.33", "1.2.36", "1.2.39"});
  CHECK(names("ZHANG^WEJ*").empty());
  CHECK(kept() == forms + 4);
  CHECK(most() == 4);
  CHECK(most(SQLITE_STMTSTATUS_REPREPARE) == 0);
}
