#pragma once
// Storage commitment (the member says "you now hold all of these"): the centre commits what it
// holds durably for that member, refuses the rest with a reason, and a study whose instances are
// all committed becomes a reading task at once. The quiet period stays the fallback for members
// that never ask. Protocol-free: dicom/commitment.cc speaks the DIMSE.
//
// Thread-safety: Commit may be called from any thread.
#include <string>
#include <vector>

#include "common/clock.h"
#include "server/store/commitment_store.h"

namespace teleread {

class StorageCommitment {
 public:
  // At most this many instances per request: a bound on one transaction's work.
  static constexpr size_t kMaxItems = 100000;

  StorageCommitment(CommitmentStore& store, TaskPolicy policy, Clock clock)
      : store_(store), policy_(std::move(policy)), clock_(std::move(clock)) {}

  // PermissionDenied for a caller that is no member; InvalidArgument for an empty or oversized
  // request or one without a transaction UID.
  Result<CommitResult> Commit(const std::string& member_id, const std::string& caller_ae,
                              const std::string& transaction_uid, const std::vector<CommitRequestItem>& items);

 private:
  CommitmentStore& store_;
  TaskPolicy policy_;
  Clock clock_;
};

}  // namespace teleread
