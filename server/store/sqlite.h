#pragma once
// Narrow RAII wrappers over the SQLite C API, private to store/.
// Not thread-safe: each Database is used by one thread at a time (its owner serialises).
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

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

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  Status prepare_error_;
  bool borrowed_ = false;  // a BindBlob buffer is bound: SQLite may read it until rebound or cleared
};

class Database {
 public:
  // Opens (creating if needed) with the project's pragmas: WAL, synchronous FULL, foreign keys.
  // A read-only open never creates the file: NotFound ("no index at PATH") when it does not exist.
  static Result<std::unique_ptr<Database>> Open(const std::filesystem::path& path, bool read_only);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  Status Exec(std::string_view sql);
  // Refreshes the query planner's statistics (sqlite_stat1) from a bounded sample of each index:
  // milliseconds even at a million rows.
  Status Analyze();
  sqlite3* handle() const { return db_; }
  int64_t LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }
  // Rows changed by the last statement.
  int Changes() const { return sqlite3_changes(db_); }
  // No transaction open and no statement stepping: holds no snapshot.
  bool Idle() const;

 private:
  explicit Database(sqlite3* db) : db_(db) {}
  sqlite3* db_;
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
