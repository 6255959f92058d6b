#pragma once
// Narrow RAII wrappers over the SQLite C API, private to store/.
// Not thread-safe: each Database is used by one thread at a time (its owner serialises).
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/status.h"

namespace teleread {

class Statement {
 public:
  // A statement that cannot be prepared (a bad query, an index that cannot be opened) fails
  // every Step and Run with the reason; binding it does nothing.
  Statement(sqlite3* db, std::string_view sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, std::string_view value);
  // Binds without a copy: `bytes` must stay valid and unchanged until Run returns (Run then
  // clears the bindings) or, stepped by hand, until the statement is destroyed.
  Statement& BindBlob(int index, std::string_view bytes);
  // true: a row is ready; false: done. kConflict for constraint violations.
  Result<bool> Step();
  // Runs a statement that returns no rows, then resets it (and clears a borrowed blob).
  Status Run();
  int64_t Int(int column) const;
  std::string Text(int column) const;
  // Valid until the next Step or Reset.
  std::string_view Blob(int column) const;
  void Reset();
  bool prepared() const { return stmt_ != nullptr; }
  // The SQL had more than whitespace after its first statement (which is all this runs).
  bool more() const { return more_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  Status prepare_error_;
  bool more_ = false;
  bool borrowed_ = false;  // a BindBlob buffer is bound: SQLite may read it until rebound or cleared
};

class CachedStatement;

class Database {
 public:
  // Opens (creating if needed) with the project's pragmas: WAL, synchronous FULL, foreign keys.
  // A read-only open never creates the file: NotFound ("no index at PATH") when it does not exist.
  static Result<std::unique_ptr<Database>> Open(const std::filesystem::path& path, bool read_only);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  Status Exec(std::string_view sql);
  // One statement without rows, prepared once per connection (a CachedStatement): the writer runs
  // BEGIN, SAVEPOINT, RELEASE and COMMIT for every request, and sqlite3_exec parsed each anew.
  // InvalidArgument, nothing run, for SQL with more than one statement.
  Status ExecKept(const std::string& sql);
  // Refreshes the query planner's statistics (sqlite_stat1) from a bounded sample of each index:
  // milliseconds even at a million rows.
  Status Analyze();
  sqlite3* handle() const { return db_; }
  int64_t LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }
  // Rows changed by the last statement.
  int Changes() const { return sqlite3_changes(db_); }
  // No transaction open and no statement stepping: holds no snapshot.
  bool Idle() const;

  // Statements kept per connection (CachedStatement); past it the least recently used one that
  // is not in use is finalized.
  static constexpr size_t kKeptStatements = 128;
  // Fewer for a connection whose SQL varies more (the query engine's).
  void keep_at_most(size_t statements) { kept_limit_ = statements; }
  size_t kept_statements() const { return kept_.size(); }
  bool keeps(const std::string& sql) const { return kept_.count(sql) > 0; }

 private:
  friend class CachedStatement;
  explicit Database(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  // Statements prepared on this connection, by their SQL (see CachedStatement).
  struct Kept {
    std::unique_ptr<Statement> statement;
    bool in_use = false;
    std::list<std::string>::iterator used;  // its place in `kept_order_`
  };
  std::unordered_map<std::string, Kept> kept_;
  std::list<std::string> kept_order_;  // SQL of `kept_`, most recently used first
  size_t kept_limit_ = kKeptStatements;
};

// A statement prepared once per connection and reused: preparing costs more than a selective
// query itself. Reset (bindings cleared) when this goes, so that the connection holds no
// snapshot. Two at once with the same SQL on one connection: the second is prepared apart.
// SQL that varies per request (e.g. a LIMIT written into it) must bind instead, or it pushes
// the fixed queries out.
class CachedStatement {
 public:
  // `keep` false: prepared apart and finalized when this goes (SQL too large to keep, e.g. a list
  // of many values).
  CachedStatement(Database& db, const std::string& sql, bool keep = true);
  ~CachedStatement();
  CachedStatement(const CachedStatement&) = delete;
  CachedStatement& operator=(const CachedStatement&) = delete;
  Statement& operator*() { return *statement_; }
  Statement* operator->() { return statement_; }

 private:
  Database::Kept* kept_ = nullptr;  // null: `own_` is used
  std::unique_ptr<Statement> own_;  // when the kept one is in use or the cache is full
  Statement* statement_ = nullptr;
};

// Rolls back in its destructor unless committed.
class Transaction {
 public:
  explicit Transaction(Database& db);  // BEGIN IMMEDIATE: take the write lock up front
  ~Transaction();
  Status status() const { return begin_; }
  Status Commit();

 private:
  Database& db_;
  Status begin_;
  bool open_ = false;
};

}  // namespace teleread
