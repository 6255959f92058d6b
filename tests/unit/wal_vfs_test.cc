// The WAL-gathering VFS (server/store/wal_vfs.h): a commit's frames reach the WAL as one write,
// no other connection sees a commit before its frames are in the file, a failed gathered write
// fails the commit, and what was committed is what a crash-copy of the files recovers.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "server/store/sqlite.h"
#include "server/store/wal_vfs.h"
#include "tests/support/process.h"

using namespace teleread;

namespace {

sqlite3* OpenRaw(const std::filesystem::path& path, const char* vfs) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) == SQLITE_OK);
  sqlite3_busy_timeout(db, 30000);
  return db;
}

void ExecRaw(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  INFO(sql << ": " << (err ? err : ""));
  sqlite3_free(err);
  REQUIRE(rc == SQLITE_OK);
}

std::string Payload(int64_t id, size_t size) { return std::string(size, static_cast<char>('a' + id % 26)); }

int InsertRaw(sqlite3* db, int64_t id, const std::string& bytes) {
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "INSERT INTO t (id, b) VALUES (?, ?)", -1, &stmt, nullptr) == SQLITE_OK);
  sqlite3_bind_int64(stmt, 1, id);
  sqlite3_bind_blob(stmt, 2, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  int rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  return rc;
}

// Every row's blob is its own payload; returns the row count (-1 on any error or bad row).
int64_t CheckedRows(sqlite3* db) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT id, b FROM t", -1, &stmt, nullptr) != SQLITE_OK) return -1;
  int64_t rows = 0;
  bool good = true;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(stmt, 0);
    const char* data = static_cast<const char*>(sqlite3_column_blob(stmt, 1));
    std::string b(data ? data : "", static_cast<size_t>(sqlite3_column_bytes(stmt, 1)));
    if (b.empty() || b != Payload(id, b.size())) good = false;
    ++rows;
  }
  sqlite3_finalize(stmt);
  return rc == SQLITE_DONE && good ? rows : -1;
}

std::string IntegrityCheck(sqlite3* db) {
  sqlite3_stmt* stmt = nullptr;
  std::string result = "prepare failed";
  if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr) == SQLITE_OK) {
    result = sqlite3_step(stmt) == SQLITE_ROW ? reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0))
                                              : sqlite3_errmsg(db);
  }
  sqlite3_finalize(stmt);
  return result;
}

// The database at `path`, opened afresh (recovering its WAL), holds `rows` checked rows and is whole.
void CheckReopened(const std::filesystem::path& path, int64_t rows) {
  sqlite3* db = OpenRaw(path, nullptr);
  CHECK(CheckedRows(db) == rows);
  CHECK(IntegrityCheck(db) == "ok");
  sqlite3_close(db);
}

int64_t PragmaInt(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  int64_t v = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return v;
}

}  // namespace

TEST_CASE("a commit's WAL frames are written to the file at once", "[store][wal_vfs]") {
  test::ScratchDir dir;
  auto db = Database::Open(dir.path() / "t.sqlite", false);
  REQUIRE(db.ok());
  REQUIRE(db.value()->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB NOT NULL)").ok());
  for (int round = 0; round < 5; ++round) {
    WalVfsCounters before = WalVfsCountersNow();
    Transaction tx(*db.value());
    REQUIRE(tx.status().ok());
    REQUIRE(InsertRaw(db.value()->handle(), round + 1, Payload(round + 1, 20000)) == SQLITE_DONE);
    REQUIRE(tx.Commit().ok());
    WalVfsCounters after = WalVfsCountersNow();
    INFO("round " << round);
    uint64_t frames = after.wal_frames - before.wal_frames;
    CHECK(frames >= 6);  // a 20 kB blob spans 5 pages, plus the table's leaf
    CHECK(after.wal_commits - before.wal_commits == 1);
    CHECK(after.wal_writes - before.wal_writes >= 2 * frames);
    CHECK(after.wal_flushes - before.wal_flushes == 1);
  }
  CHECK(CheckedRows(db.value()->handle()) == 5);
}

TEST_CASE("a reader connection never sees a commit whose frames are not in the WAL", "[store][wal_vfs]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "t.sqlite";
  sqlite3* writer = OpenRaw(path, WalGatheringVfs());
  // NORMAL: no sync at commit, so only the gathering VFS's own flushes put frames in the file
  // before the wal-index header is published.
  // Also with frequent checkpoints and WAL restarts/truncations, as in production.
  const std::string checkpoints = GENERATE(as<std::string>{}, "PRAGMA wal_autocheckpoint=0;",
                                           "PRAGMA wal_autocheckpoint=10; PRAGMA journal_size_limit=32768;");
  ExecRaw(writer, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + checkpoints +
                      "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB NOT NULL); CREATE TABLE n (v INTEGER);"
                      "INSERT INTO n VALUES (0);");
  constexpr int kCommits = 300;
  std::atomic<bool> done{false};
  std::atomic<int> bad{0}, reads{0};
  std::thread reader_thread([&] {
    sqlite3* reader = OpenRaw(path, WalGatheringVfs());
    int64_t seen = 0;
    while (!done.load() || seen < kCommits) {
      if (sqlite3_exec(reader, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
        ++bad;
        break;
      }
      int64_t rows = CheckedRows(reader);
      sqlite3_stmt* stmt = nullptr;
      int64_t n = -2;
      if (sqlite3_prepare_v2(reader, "SELECT v FROM n", -1, &stmt, nullptr) == SQLITE_OK &&
          sqlite3_step(stmt) == SQLITE_ROW) {
        n = sqlite3_column_int64(stmt, 0);
      }
      sqlite3_finalize(stmt);
      sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr);
      if (rows < 0 || rows != n || rows < seen) {
        ++bad;
        break;
      }
      seen = rows;
      ++reads;
      if (done.load() && seen < kCommits) break;
    }
    sqlite3_close(reader);
  });
  for (int i = 1; i <= kCommits; ++i) {
    ExecRaw(writer, "BEGIN");
    REQUIRE(InsertRaw(writer, i, Payload(i, 9000 + 37 * (i % 50))) == SQLITE_DONE);
    ExecRaw(writer, "UPDATE n SET v = v + 1; COMMIT");
  }
  done = true;
  reader_thread.join();
  sqlite3_close(writer);
  CHECK(bad.load() == 0);
  CHECK(reads.load() > 0);
}

TEST_CASE("a gathered write that fails fails its commit, and the connection goes on", "[store][wal_vfs]") {
  for (int code : {SQLITE_IOERR_WRITE, SQLITE_FULL}) {
    INFO("error " << code);
    test::ScratchDir dir;
    const auto path = dir.path() / "t.sqlite";
    auto db = Database::Open(path, false);
    REQUIRE(db.ok());
    Database& w = *db.value();
    REQUIRE(w.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB NOT NULL)").ok());
    REQUIRE(InsertRaw(w.handle(), 1, Payload(1, 9000)) == SQLITE_DONE);
    {
      WalVfsFailFlushes(1, code);
      Transaction tx(w);
      REQUIRE(tx.status().ok());
      REQUIRE(InsertRaw(w.handle(), 2, Payload(2, 9000)) == SQLITE_DONE);
      Status s = tx.Commit();
      WalVfsFailFlushes(0, SQLITE_OK);
      CHECK_FALSE(s.ok());
      if (code == SQLITE_FULL) CHECK(s.code() == Status::Code::kNoSpace);
    }
    auto reader = Database::Open(path, true);
    REQUIRE(reader.ok());
    CHECK(CheckedRows(reader.value()->handle()) == 1);
    REQUIRE(InsertRaw(w.handle(), 3, Payload(3, 9000)) == SQLITE_DONE);
    CHECK(CheckedRows(reader.value()->handle()) == 2);
    reader.value().reset();
    db.value().reset();
    sqlite3* plain = OpenRaw(path, nullptr);
    CHECK(CheckedRows(plain) == 2);
    sqlite3_stmt* stmt = nullptr;
    REQUIRE(sqlite3_prepare_v2(plain, "SELECT group_concat(id) FROM t", -1, &stmt, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
    CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0))) == "1,3");
    sqlite3_finalize(stmt);
    sqlite3_close(plain);
  }
}

TEST_CASE("what the gathering VFS committed is what a crash copy of the files recovers", "[store][wal_vfs]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "t.sqlite";
  sqlite3* db = OpenRaw(path, WalGatheringVfs());
  // A tiny page cache spills pages to the WAL mid-transaction, which SQLite then writes again in
  // place and re-checksums at commit: the rewrites must land after the gathered frames.
  const std::string checkpoints = GENERATE(as<std::string>{}, "PRAGMA wal_autocheckpoint=0;",
                                           "PRAGMA wal_autocheckpoint=10; PRAGMA journal_size_limit=32768;");
  ExecRaw(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=10;" + checkpoints +
                  "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB NOT NULL)");
  int64_t id = 0;
  std::vector<int> sizes = {100, 9000, 130000, 2000000};  // the large ones exceed what is gathered at once
  for (int round = 0; round < 3; ++round) {
    for (int size : sizes) {
      ExecRaw(db, "BEGIN");
      for (int k = 0; k < 40; ++k) {
        ++id;
        REQUIRE(InsertRaw(db, id, Payload(id, size / 40 + 1)) == SQLITE_DONE);
      }
      ExecRaw(db, "UPDATE t SET b = b WHERE id % 7 = 0; COMMIT");
    }
    ExecRaw(db, "DELETE FROM t WHERE id % 5 = 0");
  }
  const int64_t committed = CheckedRows(db);
  REQUIRE(committed > 0);
  ExecRaw(db, "BEGIN; DELETE FROM t");  // uncommitted: not in the copy
  const auto copy = dir.path() / "copy.sqlite";
  std::filesystem::copy_file(path, copy);
  std::filesystem::copy_file(path.string() + "-wal", copy.string() + "-wal");
  ExecRaw(db, "ROLLBACK");
  sqlite3_close(db);
  CheckReopened(copy, committed);
}

TEST_CASE("gathered WAL bytes land before a later write over them, and reads see them", "[store][wal_vfs]") {
  test::ScratchDir dir;
  const std::string db_path = (dir.path() / "t.sqlite").string();
  const std::string wal_path = db_path + "-wal";
  { std::ofstream(db_path).put('\0'); }  // SQLite gives a WAL its database's permissions
  sqlite3_vfs* vfs = sqlite3_vfs_find(WalGatheringVfs());
  REQUIRE(vfs != nullptr);
  sqlite3_filename name = sqlite3_create_filename(db_path.c_str(), "", wal_path.c_str(), 0, nullptr);
  REQUIRE(name != nullptr);
  std::vector<std::max_align_t> storage(static_cast<size_t>(vfs->szOsFile) / sizeof(std::max_align_t) + 1);
  auto* file = reinterpret_cast<sqlite3_file*>(storage.data());
  int out_flags = 0;
  REQUIRE(vfs->xOpen(vfs, sqlite3_filename_wal(name), file,
                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_WAL, &out_flags) == SQLITE_OK);
  const sqlite3_io_methods* io = file->pMethods;
  auto frame_header = [](bool commit) {
    std::string h(24, '\0');
    h[3] = 1;
    if (commit) h[7] = 2;
    return h;
  };
  auto write = [&](const std::string& bytes, sqlite3_int64 offset) {
    REQUIRE(io->xWrite(file, bytes.data(), static_cast<int>(bytes.size()), offset) == SQLITE_OK);
  };
  auto read = [&](sqlite3_int64 offset) {
    std::string bytes(4096, '\0');
    REQUIRE(io->xRead(file, bytes.data(), 4096, offset) == SQLITE_OK);
    return bytes;
  };
  const WalVfsCounters before = WalVfsCountersNow();
  write(std::string(32, 'H'), 0);
  write(frame_header(false), 32);
  write(std::string(4096, 'a'), 56);
  write(frame_header(false), 4152);
  write(std::string(4096, 'b'), 4176);
  CHECK(WalVfsCountersNow().wal_flushes == before.wal_flushes);  // nothing written yet
  write(std::string(4096, 'c'), 56);                             // over gathered bytes
  write(frame_header(true), 8272);
  write(std::string(4096, 'd'), 8296);  // the commit frame's page: written at once
  const WalVfsCounters after = WalVfsCountersNow();
  CHECK(after.wal_flushes - before.wal_flushes == 2);
  CHECK(after.wal_writes - before.wal_writes == 8);
  CHECK(after.wal_commits - before.wal_commits == 1);
  sqlite3_int64 size = 0;
  REQUIRE(io->xFileSize(file, &size) == SQLITE_OK);
  CHECK(size == 8296 + 4096);
  CHECK(read(56) == std::string(4096, 'c'));
  CHECK(read(4176) == std::string(4096, 'b'));
  CHECK(read(8296) == std::string(4096, 'd'));
  write(frame_header(false), 12392);
  write(std::string(4096, 'e'), 12416);
  REQUIRE(io->xClose(file) == SQLITE_OK);  // writes what it gathered
  sqlite3_free_filename(name);
  std::ifstream in(wal_path, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(all.size() == 12416 + 4096);
  CHECK(all.substr(56, 4096) == std::string(4096, 'c'));
  CHECK(all.substr(12416, 4096) == std::string(4096, 'e'));
}

TEST_CASE("frames gathered for a rolled-back transaction never land over another writer's commit", "[store][wal_vfs]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "t.sqlite";
  const std::string wal_path = path.string() + "-wal";
  sqlite3* a = OpenRaw(path, WalGatheringVfs());
  ExecRaw(a,
          "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0;"
          "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB NOT NULL)");
  for (int i = 1; i <= 4; ++i) REQUIRE(InsertRaw(a, i, Payload(i, 3000)) == SQLITE_DONE);
  // Page 1 then comes from the database file, so the rollback reads nothing from the WAL.
  ExecRaw(a, "PRAGMA cache_size=5; PRAGMA wal_checkpoint(TRUNCATE)");
  REQUIRE(std::filesystem::file_size(wal_path) == 0);
  const int64_t page = PragmaInt(a, "PRAGMA page_size");
  const WalVfsCounters before = WalVfsCountersNow();
  ExecRaw(a, "BEGIN");
  for (int i = 100; i < 120; ++i) REQUIRE(InsertRaw(a, i, Payload(i, 5000)) == SQLITE_DONE);  // spills
  const uint64_t frames = WalVfsCountersNow().wal_frames - before.wal_frames;
  REQUIRE(frames >= 10);
  ExecRaw(a, "ROLLBACK");
  // Nothing is left gathered once the WAL write lock is released.
  CHECK(std::filesystem::file_size(wal_path) == 32 + frames * static_cast<uint64_t>(24 + page));
  sqlite3* b = OpenRaw(path, nullptr);  // its frames start where A's rolled-back ones did
  ExecRaw(b, "BEGIN");
  for (int i = 200; i < 260; ++i) REQUIRE(InsertRaw(b, i, Payload(i, 5000)) == SQLITE_DONE);
  ExecRaw(b, "COMMIT");
  CHECK(CheckedRows(a) == 64);
  CHECK(IntegrityCheck(a) == "ok");
  CHECK(CheckedRows(b) == 64);
  CHECK(IntegrityCheck(b) == "ok");
  sqlite3_close(a);
  sqlite3_close(b);
  sqlite3* reopened = OpenRaw(path, nullptr);
  CHECK(CheckedRows(reopened) == 64);
  sqlite3_close(reopened);
}

TEST_CASE("commits stay whole and gathered across autocheckpoints, restarts and truncations", "[store][wal_vfs]") {
  test::ScratchDir dir;
  const auto path = dir.path() / "t.sqlite";
  auto db = Database::Open(path, false);  // the server's settings: synchronous=FULL, a size limit
  REQUIRE(db.ok());
  sqlite3* w = db.value()->handle();
  ExecRaw(w,
          "PRAGMA wal_autocheckpoint=10; PRAGMA journal_size_limit=32768;"
          "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB NOT NULL)");
  const auto page = static_cast<uint64_t>(PragmaInt(w, "PRAGMA page_size"));
  sqlite3* other = OpenRaw(path, nullptr);
  constexpr int kCommits = 60;
  int restarted = 0;
  for (int i = 1; i <= kCommits; ++i) {
    INFO("commit " << i);
    if (i % 4 == 0) ExecRaw(other, i % 8 == 0 ? "PRAGMA wal_checkpoint(TRUNCATE)" : "PRAGMA wal_checkpoint(RESTART)");
    const WalVfsCounters before = WalVfsCountersNow();
    Transaction tx(*db.value());
    REQUIRE(tx.status().ok());
    REQUIRE(InsertRaw(w, i, Payload(i, 7000 + 31 * i)) == SQLITE_DONE);
    REQUIRE(tx.Commit().ok());
    const WalVfsCounters after = WalVfsCountersNow();
    const uint64_t frames = after.wal_frames - before.wal_frames;
    const uint64_t bytes = after.wal_bytes - before.wal_bytes;
    CHECK(after.wal_commits - before.wal_commits == 1);
    // Every byte gathered: the frames, plus a new WAL header (synced alone) after a restart.
    const bool header = bytes == 32 + frames * (24 + page);
    if (header) ++restarted;
    CHECK((header || bytes == frames * (24 + page)));
    CHECK(after.wal_flushes - before.wal_flushes == (header ? 2u : 1u));
  }
  CHECK(restarted >= kCommits / 8);
  CHECK(CheckedRows(w) == kCommits);
  CHECK(CheckedRows(other) == kCommits);
  CHECK(IntegrityCheck(other) == "ok");
  sqlite3_close(other);
  db.value().reset();
  CheckReopened(path, kCommits);
}

TEST_CASE("the gathering VFS refuses a database opened without powersafe overwrite", "[store][wal_vfs]") {
  test::ScratchDir dir;
  const std::string uri = "file:" + (dir.path() / "t.sqlite").string();
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI;
  CHECK(sqlite3_open_v2((uri + "?psow=0").c_str(), &db, flags, WalGatheringVfs()) == SQLITE_CANTOPEN);
  sqlite3_close(db);
  db = nullptr;
  CHECK(sqlite3_open_v2((uri + "?psow=1").c_str(), &db, flags, WalGatheringVfs()) == SQLITE_OK);
  sqlite3_close(db);
}
