#pragma once
// How a complete study becomes a waiting task, in SQL: its priority (the sender's, else the
// member's default) and due time (complete time + the SLA for that priority). Shared by the
// quiet-period promotion and storage commitment; private to server/store/.
#include <string>

#include "server/store/index.h"
#include "server/store/sqlite.h"

namespace teleread {

// "INSERT INTO reading_tasks ... SELECT ... FROM studies WHERE <where>". Parameters: ?1 the
// complete time; ?2 free for `where`; ?3..?5 the SLAs and ?6.. the member defaults, bound by
// BindTaskPolicy.
inline std::string InsertTasksSql(const TaskPolicy& policy, const std::string& where) {
  std::string priority =
      "CASE WHEN priority IN ('STAT', 'HIGH') THEN priority WHEN priority IN ('ROUTINE', 'MEDIUM', 'LOW') "
      "THEN 'ROUTINE'";
  for (size_t i = 0; i < policy.member_default_priority.size(); ++i) {
    priority += " WHEN member_id = ?" + std::to_string(6 + 2 * i) + " THEN ?" + std::to_string(7 + 2 * i);
  }
  priority += " ELSE 'ROUTINE' END";
  return "INSERT INTO reading_tasks (study_pk, state, priority, complete_ms, updated_ms, due_ms) SELECT id, "
         "'waiting', " +
         priority + ", ?1, ?1, ?1 + CASE " + priority + " WHEN 'STAT' THEN ?3 WHEN 'HIGH' THEN ?4 ELSE ?5 END " +
         "FROM studies WHERE " + where;
}

// Claims whose lease ended by ?1 back to the worklist (or to reported, for an amendment's),
// found through reading_tasks_lease.
inline constexpr const char* kExpireLeasesSql =
    "UPDATE reading_tasks SET state = CASE WHEN reported_ms > 0 THEN 'reported' ELSE 'waiting' END, "
    "expired_claim_by = claimed_by, claimed_by = '', updated_ms = ?1 WHERE state = 'claimed' AND "
    "lease_expires_ms <= ?1";

inline void BindTaskPolicy(Statement& insert, const TaskPolicy& policy) {
  insert.Bind(3, policy.sla_stat_ms).Bind(4, policy.sla_high_ms).Bind(5, policy.sla_routine_ms);
  for (size_t i = 0; i < policy.member_default_priority.size(); ++i) {
    insert.Bind(static_cast<int>(6 + 2 * i), policy.member_default_priority[i].first);
    insert.Bind(static_cast<int>(7 + 2 * i), policy.member_default_priority[i].second);
  }
}

}  // namespace teleread
