#pragma once
// Storage commitment in the index: marks the instances a member asks the centre to commit, if
// the centre holds them (indexed, hence durable) and they are that member's, and turns every
// study whose instances are all committed into a reading task in the same transaction, without
// waiting for the quiet period. Audited per request.
//
// Thread-safety: any thread.
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "server/store/index.h"

namespace teleread {

struct CommitRequestItem {
  std::string sop_class_uid;
  std::string sop_instance_uid;
};

enum class CommitFailure { kNoSuchInstance, kClassInstanceConflict };

struct CommitResult {
  std::vector<CommitRequestItem> committed;
  std::vector<std::pair<CommitRequestItem, CommitFailure>> failed;
  std::vector<std::string> tasks_created;  // Study Instance UIDs that became reading tasks now
};

class CommitmentStore {
 public:
  explicit CommitmentStore(Index& index) : index_(index) {}
  // `transaction_uid` and `actor` (the calling AE title) go to the audit trail.
  Result<CommitResult> Commit(const std::string& member_id, const std::vector<CommitRequestItem>& items,
                              const std::string& transaction_uid, const std::string& actor, const TaskPolicy& policy,
                              int64_t now_ms);

 private:
  Index& index_;
};

}  // namespace teleread
