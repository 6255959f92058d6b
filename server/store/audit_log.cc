#include "server/store/audit_log.h"

#include "server/store/index.h"
#include "server/store/sqlite.h"

namespace teleread {

Status AppendAudit(Database& db, int64_t at_ms, const AuditEntry& e) {
  Statement a(db.handle(),
              "INSERT INTO audit_log (at_ms, actor, action, study_instance_uid, detail) VALUES (?1, ?2, ?3, ?4, ?5)");
  return a.Bind(1, at_ms).Bind(2, e.actor).Bind(3, e.action).Bind(4, e.study_instance_uid).Bind(5, e.detail).Run();
}

Status AuditLog::Append(const AuditEntry& entry) {
  const int64_t now = clock_();
  return index_.Write([&](Database& db) { return AppendAudit(db, now, entry); });
}

}  // namespace teleread
