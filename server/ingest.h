#pragma once
// What happens to one received object: validate, place durably, index, decide the DIMSE
// status. Plain C++ over ObjectStore and Index; the listener calls it, tests call it directly.
//
// Thread-safety: Store may be called from many association threads at once.
#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>

#include "server/index.h"
#include "server/object_store.h"

namespace teleread {

// C-STORE response statuses (PS3.4 B.2.3, PS3.7 C).
namespace dimse {
inline constexpr uint16_t kSuccess = 0x0000;
inline constexpr uint16_t kDuplicateSopInstance = 0x0111;  // same UID stored with other content
inline constexpr uint16_t kNotAuthorized = 0x0124;         // study belongs to another member
inline constexpr uint16_t kOutOfResources = 0xA700;
inline constexpr uint16_t kDataSetDoesNotMatchSopClass = 0xA900;
inline constexpr uint16_t kCannotUnderstand = 0xC000;
}  // namespace dimse

struct StoreRequest {
  std::filesystem::path temp_file;  // the object as received, with a file meta header
  std::string calling_ae_title;
  std::string member_id;
  std::string negotiated_sop_class_uid;   // abstract syntax of the presentation context used
  std::string affected_sop_instance_uid;  // from the C-STORE command
  // Runs in the transaction that indexes the object (or on its own when the object was indexed
  // before): the report desk records the report with its instance. Must be idempotent.
  Index::WriteFn also;
};

struct StoreOutcome {
  uint16_t status = dimse::kSuccess;
  std::string error_comment;  // why, for the sender and the log; empty on success
  bool stored_new = false;    // false for a re-sent identical object
  uint64_t bytes = 0;
};

class Ingest {
 public:
  using Clock = std::function<int64_t()>;  // milliseconds since the epoch
  Ingest(ObjectStore& store, Index& index, Clock clock);

  // Takes ownership of request.temp_file: it is placed or removed before this returns.
  StoreOutcome Store(const StoreRequest& request);

 private:
  StoreOutcome StoreExisting(const StoreRequest& request, const NewInstance& instance);

  static constexpr size_t kSopLockStripes = 256;
  ObjectStore& store_;
  Index& index_;
  Clock clock_;
  std::array<std::mutex, kSopLockStripes> sop_locks_;
};

}  // namespace teleread
