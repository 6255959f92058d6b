#include "server/store/commitment_store.h"

#include <set>

#include "server/store/audit_log.h"
#include "server/store/sqlite.h"
#include "server/store/task_sql.h"

namespace teleread {

Result<CommitResult> CommitmentStore::Commit(const std::string& member_id, const std::vector<CommitRequestItem>& items,
                                             const std::string& transaction_uid, const std::string& actor,
                                             const TaskPolicy& policy, int64_t now) {
  CommitResult result;
  Status s = index_.Write([&](Database& db) -> Status {
    result = CommitResult{};  // a retried write starts over
    Statement find(db.handle(),
                   "SELECT i.id, i.sop_class_uid, st.member_id, st.id FROM instances i JOIN series se ON "
                   "se.id = i.series_pk JOIN studies st ON st.id = se.study_pk WHERE i.sop_instance_uid = ?1");
    Statement mark(db.handle(), "UPDATE instances SET committed_ms = ?2 WHERE id = ?1 AND committed_ms = 0");
    std::set<int64_t> studies;
    for (const CommitRequestItem& item : items) {
      find.Bind(1, item.sop_instance_uid);
      Result<bool> row = find.Step();
      if (!row.ok()) return row.status();
      // Another member's instance reads as absent, exactly like one never received.
      if (!row.value() || find.Text(2) != member_id) {
        find.Reset();
        result.failed.emplace_back(item, CommitFailure::kNoSuchInstance);
        continue;
      }
      const int64_t id = find.Int(0), study = find.Int(3);
      const bool same_class = find.Text(1) == item.sop_class_uid;
      find.Reset();
      if (!same_class) {
        result.failed.emplace_back(item, CommitFailure::kClassInstanceConflict);
        continue;
      }
      if (Status st = mark.Bind(1, id).Bind(2, now).Run(); !st.ok()) return st;
      result.committed.push_back(item);
      studies.insert(study);
    }
    // A study with every instance committed is complete: the member said so.
    Statement insert(db.handle(),
                     InsertTasksSql(policy,
                                    "id = ?2 AND task_created = 0 AND NOT EXISTS (SELECT 1 FROM instances i "
                                    "JOIN series se ON se.id = i.series_pk WHERE se.study_pk = ?2 AND "
                                    "i.committed_ms = 0)"));
    Statement created(db.handle(), "UPDATE studies SET task_created = 1 WHERE id = ?1");
    Statement uid(db.handle(), "SELECT study_instance_uid FROM studies WHERE id = ?1");
    for (int64_t study : studies) {
      insert.Bind(1, now).Bind(2, study);
      BindTaskPolicy(insert, policy);
      if (Status st = insert.Run(); !st.ok()) return st;
      const bool promoted = db.Changes() == 1;
      if (promoted) {
        if (Status st = created.Bind(1, study).Run(); !st.ok()) return st;
      }
      uid.Bind(1, study);
      Result<bool> row = uid.Step();
      if (!row.ok()) return row.status();
      const std::string study_uid = uid.Text(0);
      uid.Reset();
      if (promoted) result.tasks_created.push_back(study_uid);
      if (Status st = AppendAudit(
              db, now, {actor, "commit", study_uid, "transaction " + transaction_uid + (promoted ? "; complete" : "")});
          !st.ok()) {
        return st;
      }
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return result;
}

}  // namespace teleread
