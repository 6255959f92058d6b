#include "server/reading/storage_commitment.h"

#include "common/log.h"

namespace teleread {

Result<CommitResult> StorageCommitment::Commit(const std::string& member_id, const std::string& caller_ae,
                                               const std::string& transaction_uid,
                                               const std::vector<CommitRequestItem>& items) {
  if (member_id.empty()) return Status::PermissionDenied("only member hospitals request storage commitment");
  if (transaction_uid.empty()) return Status::InvalidArgument("no Transaction UID");
  if (items.empty()) return Status::InvalidArgument("no Referenced SOP Sequence items");
  if (items.size() > kMaxItems) return Status::InvalidArgument("more than 100000 instances in one request");
  Result<CommitResult> r = store_.Commit(member_id, items, transaction_uid, caller_ae, policy_, clock_());
  if (!r.ok()) return r;
  spdlog::info("storage commitment {} from {} ({}): {} committed, {} failed{}", transaction_uid, caller_ae, member_id,
               r->committed.size(), r->failed.size(),
               r->tasks_created.empty()
                   ? std::string()
                   : "; " + std::to_string(r->tasks_created.size()) + " stud" +
                         (r->tasks_created.size() == 1 ? "y" : "ies") + " complete: queued for reading");
  return r;
}

}  // namespace teleread
