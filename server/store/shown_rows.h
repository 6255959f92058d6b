#pragma once
// Which commits change what a worklist row shows (Index::tasks_version): the writer's update
// hook notes each changed row of the tables a worklist row is read from; before the commit,
// inside the transaction, Take says whether any of them belongs to a study with a reading task.
// A study still being received (no task yet) changes no worklist page, so a member pushing new
// studies does not end every kept page with each object it sends; a new task (a reading_tasks
// row) always does.
//
// Thread-safety: used only under the index's writer_mu_ (by whichever thread leads the batch).
#include <cstdint>
#include <unordered_set>

namespace teleread {

class Database;

class ShownRowChanges {
 public:
  // From sqlite3_update_hook: `op` is SQLITE_INSERT, SQLITE_UPDATE or SQLITE_DELETE.
  void Note(int op, const char* table, int64_t rowid);
  // Whether the changes noted since the last call may change a worklist row, read on `db` inside
  // the transaction about to commit; clears the notes. True when unsure (a read failed, a row was
  // deleted).
  bool Take(Database& db);

 private:
  bool any_ = false;                     // a change that shows, whatever the study
  std::unordered_set<int64_t> studies_;  // studies rows changed
  std::unordered_set<int64_t> series_;   // series rows added or changed
};

}  // namespace teleread
