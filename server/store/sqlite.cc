#include "server/store/sqlite.h"

#include <cctype>
#include <utility>

#include "server/store/wal_vfs.h"

namespace teleread {
namespace {

Status FromSqlite(sqlite3* db, int rc, std::string_view what) {
  std::string msg = std::string(what) + ": " + sqlite3_errmsg(db);
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      return Status::Conflict(msg);
    case SQLITE_FULL:
      return Status::NoSpace(msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status::Corruption(msg);
    default:
      return Status::IOError(msg);
  }
}

}  // namespace

Statement::Statement(sqlite3* db, std::string_view sql) : db_(db) {
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt_, &tail);
  // Kept, not thrown: it reaches the caller through Step or Run, on whatever thread that is.
  if (rc != SQLITE_OK) prepare_error_ = FromSqlite(db, rc, "SQL prepare failed");
  for (const char* end = sql.data() + sql.size(); rc == SQLITE_OK && tail && tail < end; ++tail) {
    if (!std::isspace(static_cast<unsigned char>(*tail))) {
      more_ = true;
      break;
    }
  }
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::Bind(int index, int64_t value) {
  if (stmt_) sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Statement& Statement::Bind(int index, std::string_view value) {
  if (stmt_) sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::BindBlob(int index, std::string_view bytes) {
  if (stmt_) borrowed_ = sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(), SQLITE_STATIC) == SQLITE_OK;
  return *this;
}

std::string_view Statement::Blob(int column) const {
  const void* data = sqlite3_column_blob(stmt_, column);
  const int size = sqlite3_column_bytes(stmt_, column);
  return data ? std::string_view(static_cast<const char*>(data), static_cast<size_t>(size)) : std::string_view();
}

Result<bool> Statement::Step() {
  if (!stmt_) return prepare_error_;
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  Status s = FromSqlite(db_, rc, "SQL step failed");
  sqlite3_reset(stmt_);
  return s;
}

Status Statement::Run() {
  Result<bool> r = Step();
  Reset();
  if (std::exchange(borrowed_, false)) sqlite3_clear_bindings(stmt_);
  return r.ok() ? Status::Ok() : r.status();
}

int64_t Statement::Int(int column) const { return sqlite3_column_int64(stmt_, column); }

std::string Statement::Text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  if (!text) return std::string();
  return std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

void Statement::Reset() {
  if (!stmt_) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Result<std::unique_ptr<Database>> Database::Open(const std::filesystem::path& path, bool read_only) {
  // Before SQLite's first use: without memory statistics its allocator takes no process-wide
  // mutex, which every connection on every thread otherwise contended for on each allocation.
  static const int initialised = [] {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return sqlite3_initialize();
  }();
  if (initialised != SQLITE_OK) return Status::IOError("SQLite cannot be initialised");
  std::error_code ec;
  if (read_only && !std::filesystem::exists(path, ec) && !ec) return Status::NotFound("no index at " + path.string());
  sqlite3* db = nullptr;
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, WalGatheringVfs());
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Status::IOError("cannot open index " + path.string() + ": " + msg);
  }
  std::unique_ptr<Database> database(new Database(db));
  // Every pragma lives here. A writer waits for the other process-level writer rather than
  // failing; WAL lets readers run beside ingest; FULL makes each commit durable on return (the
  // index lowers it to NORMAL for batches start-up recovery can redo: index.h).
  // Small objects pass through the WAL: after a checkpoint it is truncated to 64 MiB rather than
  // kept at its high-water mark.
  sqlite3_busy_timeout(db, 30000);
  const char* pragmas = read_only ? "PRAGMA foreign_keys=ON;"
                                  : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; "
                                    "PRAGMA journal_size_limit=67108864;";
  Status s = database->Exec(pragmas);
  if (!s.ok()) return s;
  return database;
}

Database::~Database() {
  kept_.clear();  // finalized before the close
  sqlite3_close_v2(db_);
}

CachedStatement::CachedStatement(Database& db, const std::string& sql, bool keep) {
  auto it = keep ? db.kept_.find(sql) : db.kept_.end();
  if (it == db.kept_.end()) {
    auto statement = std::make_unique<Statement>(db.db_, sql);
    // One that failed to prepare (e.g. the index was busy) is tried afresh next time.
    if (!statement->prepared() || !keep) {
      own_ = std::move(statement);
      statement_ = own_.get();
      return;
    }
    // Full: the least recently used one not in use goes (all in use: this one is not kept).
    for (auto old = db.kept_order_.end(); db.kept_.size() >= db.kept_limit_ && old != db.kept_order_.begin();) {
      --old;
      auto victim = db.kept_.find(*old);
      if (victim->second.in_use) continue;
      old = db.kept_order_.erase(old);
      db.kept_.erase(victim);
    }
    if (db.kept_.size() >= db.kept_limit_) {
      own_ = std::move(statement);
      statement_ = own_.get();
      return;
    }
    db.kept_order_.push_front(sql);
    it = db.kept_.emplace(sql, Database::Kept{std::move(statement), false, db.kept_order_.begin()}).first;
  }
  if (!it->second.in_use) {
    kept_ = &it->second;
    kept_->in_use = true;
    statement_ = kept_->statement.get();
    db.kept_order_.splice(db.kept_order_.begin(), db.kept_order_, kept_->used);
  } else {
    own_ = std::make_unique<Statement>(db.db_, sql);
    statement_ = own_.get();
  }
}

CachedStatement::~CachedStatement() {
  if (!kept_) return;
  statement_->Reset();
  kept_->in_use = false;
}

bool Database::Idle() const {
  if (!sqlite3_get_autocommit(db_)) return false;
  for (sqlite3_stmt* s = sqlite3_next_stmt(db_, nullptr); s; s = sqlite3_next_stmt(db_, s)) {
    if (sqlite3_stmt_busy(s)) return false;
  }
  return true;
}

Status Database::Analyze() { return Exec("PRAGMA analysis_limit = 2000; ANALYZE;"); }

Status Database::Exec(std::string_view sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string msg = err ? err : "unknown error";
  sqlite3_free(err);
  return FromSqlite(db_, rc, msg);
}

Status Database::ExecKept(const std::string& sql) {
  CachedStatement statement(*this, sql);
  // sqlite3_exec would run the rest; a statement runs only its first.
  if (statement->more()) return Status::InvalidArgument("ExecKept runs one statement: " + sql);
  return statement->Run();
}

Transaction::Transaction(Database& db) : db_(db) {
  begin_ = db_.ExecKept("BEGIN IMMEDIATE");
  open_ = begin_.ok();
}

Transaction::~Transaction() {
  if (open_) (void)db_.ExecKept("ROLLBACK");
}

Status Transaction::Commit() {
  if (!open_) return begin_.ok() ? Status::InvalidArgument("transaction already finished") : begin_;
  Status s = db_.ExecKept("COMMIT");
  open_ = !s.ok() && !sqlite3_get_autocommit(db_.handle());
  return s;
}

}  // namespace teleread
