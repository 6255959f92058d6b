#include "server/store/shown_rows.h"

#include <sqlite3.h>

#include <cstring>
#include <string>

#include "server/store/sqlite.h"

namespace teleread {

void ShownRowChanges::Note(int op, const char* table, int64_t rowid) {
  const bool deleted = op == SQLITE_DELETE;
  if (std::strcmp(table, "reading_tasks") == 0) {
    any_ = true;
  } else if (std::strcmp(table, "patients") == 0) {
    // A new patient row is no task's patient yet; a changed one may be.
    any_ |= op != SQLITE_INSERT;
  } else if (std::strcmp(table, "studies") == 0) {
    // A new study has no task yet: the task's own row, when it comes, ends the pages.
    if (deleted) any_ = true;
    if (op == SQLITE_UPDATE) studies_.insert(rowid);
  } else if (std::strcmp(table, "series") == 0) {
    // Assumes a series never moves between studies: an UPDATE is checked against the study it
    // is in when the batch commits, and every instance stored updates its series
    // (num_instances), so treating each series UPDATE as shown would end every page per object
    // received. Nothing writes series.study_pk after the insert, nor INSERT OR REPLACE into these
    // tables (its implicit delete is not reported to the update hook); a change that does must
    // mark any_.
    if (deleted) any_ = true;
    if (!deleted) series_.insert(rowid);
  }
}

bool ShownRowChanges::Take(Database& db) {
  bool shown = any_;
  if (!shown && !series_.empty()) {
    CachedStatement q(db, "SELECT study_pk FROM series WHERE id = ?1");
    for (int64_t id : series_) {
      q->Bind(1, id);
      Result<bool> row = q->Step();
      if (!row.ok() || !row.value()) {  // unsure: as if it showed
        shown = true;
        break;
      }
      studies_.insert(q->Int(0));
      q->Reset();
    }
  }
  if (!shown && !studies_.empty()) {
    CachedStatement q(db, "SELECT 1 FROM reading_tasks WHERE study_pk = ?1");
    for (int64_t id : studies_) {
      q->Bind(1, id);
      Result<bool> row = q->Step();
      q->Reset();
      if (!row.ok() || row.value()) {
        shown = true;
        break;
      }
    }
  }
  any_ = false;
  studies_.clear();
  series_.clear();
  return shown;
}

}  // namespace teleread
