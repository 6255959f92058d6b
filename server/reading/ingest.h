#pragma once
// What happens to one received object: validate, place durably, index, say what became of it.
// An object of at most ObjectStore::small_object_bytes is kept inside the index, written in the
// same transaction (the same group commit) as its row; a larger one is placed as a file first.
// Plain C++ over ObjectStore and Index; the listener and the report desk call it, tests too.
//
// Thread-safety: Store may be called from many association threads at once.
#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "server/store/index.h"
#include "server/store/object_store.h"

namespace teleread {

class PendingSync;  // server/store/direct_file.h

// What became of a received object, in the workflow's terms; the DICOM side maps it to a
// C-STORE status (dicom/dimse_status.h), the HTTP side to an HTTP status.
enum class IngestCode {
  kStored,            // stored durably and indexed, or an identical re-send
  kDifferentContent,  // the SOP Instance UID is stored with other content: the first is kept
  kNotAuthorized,     // the study or series belongs to another member (or study)
  kNoStorage,         // no space, or the object could not be written or indexed
  kDoesNotMatch,      // SOP class or instance differs from the request, or a key UID is missing
  kUnreadable,        // the data set cannot be parsed
};

// An object stored together with a request's own (ingest_companions.cc).
struct CompanionObject {
  std::filesystem::path temp_file;  // owned by Store, like StoreRequest::temp_file
  InstanceSummary summary;          // of the same member, made by the centre (no checks but placement)
};

struct StoreRequest {
  std::filesystem::path temp_file;  // the object as received, with a file meta header (or `bytes`)
  std::string calling_ae_title;
  std::string member_id;
  std::string negotiated_sop_class_uid;   // abstract syntax of the presentation context used
  std::string affected_sop_instance_uid;  // from the C-STORE command
  // The object's summary when the caller has parsed it already (the report desk); else Store
  // parses the file.
  std::optional<InstanceSummary> summary;
  // Runs in the transaction that indexes the object (or on its own when the object was indexed
  // before): the report desk records the report with its instance. Must be idempotent.
  Index::WriteFn also;
  // Indexed in the same transaction, after `also`: all or none (the report desk's PDF copy of
  // its SR). When this object was indexed before, they go with `also` in a write of its own.
  // Left out, and their files removed, when `companions_wanted` (if set) says no after `also`
  // ran (the desk: `also` found its report recorded before). (The `= {}` lets the listener's
  // aggregate initialisation leave these out without a warning.)
  std::vector<CompanionObject> companions = {};
  std::function<bool()> companions_wanted = {};  // called inside the index write, on its leader's thread
  // The object in memory instead of temp_file (a small one, as received): kept in the index.
  std::string bytes = {};
  // Received into a segment instead, durable: its index path ("segments/<name>@<offset>+<length>").
  std::string segment_object = {};
  // segment_object and its sealed trailer are on the disk already (fdatasync'd): a lost index
  // commit is redone by start-up recovery, so its row commits without the WAL's sync (index.h).
  bool segment_synced = false;
  // That sync when it may still be running (the receiver's): Store waits for it before the row
  // and refuses the object (0xA700) when it failed.
  PendingSync* segment_sync = nullptr;
  // temp_file's (or segment_object's) first bytes, when the receiver kept them: its parse reads
  // them from here.
  std::string head = {};
  // The write its receiver announced (Ingest::Receiving): told it arrives as the row's write queues.
  Index::Coming* coming = nullptr;
};

struct StoreOutcome {
  IngestCode code = IngestCode::kStored;
  std::string error_comment;  // why, for the sender and the log; empty on success
  bool stored_new = false;    // false for a re-sent identical object
  uint64_t bytes = 0;
};

class Ingest {
 public:
  static constexpr size_t kSopLockStripes = 256;
  Ingest(ObjectStore& store, Index& index, Clock clock);

  // Takes ownership of request.temp_file: it is placed or removed before this returns.
  // A study indexed for another member is refused (0x0124) before anything is placed, except
  // for an object kept in the index without companions: its index write refuses it.
  StoreOutcome Store(const StoreRequest& request);
  // Whether the segment copy Store was handed (request.segment_object) is unneeded for good: a
  // definite refusal (other content, another member's study, a mismatch), or an identical re-send
  // whose row names another copy. Not after a refusal that may pass later (no storage, unreadable).
  bool SegmentCopyUnneeded(const StoreRequest& request, const StoreOutcome& outcome);
  // A C-STORE's SOP Instance UID, held by its association from the request (before the data set
  // arrives) until it is answered. Two copies of one UID then never both lie sealed in segments
  // while either's row is unsynced (index.h, Durability): start-up replays segments in the order
  // they were made, not in the order of their commits, and could otherwise index the copy that
  // was not acknowledged. A row committed unsynced while another copy of its UID is being
  // received is synced instead; a copy whose UID has an unsynced row waits for that row's sync.
  class Receiving {
   public:
    Receiving(Receiving&& other) noexcept
        : ingest_(std::exchange(other.ingest_, nullptr)),
          uid_(std::move(other.uid_)),
          coming_(std::move(other.coming_)) {}
    Receiving(const Receiving&) = delete;
    Receiving& operator=(const Receiving&) = delete;
    Receiving& operator=(Receiving&&) = delete;
    ~Receiving();
    // Its row's write, on its way to the index (StoreRequest::coming).
    Index::Coming* coming() { return &coming_; }

   private:
    friend class Ingest;
    Receiving(Ingest* ingest, std::string uid, Index::Coming coming)
        : ingest_(ingest), uid_(std::move(uid)), coming_(std::move(coming)) {}
    Ingest* ingest_;
    std::string uid_;
    Index::Coming coming_;
  };
  // Fails (kIOError) when an unsynced row of the UID cannot be synced: answer 0xA700.
  Result<Receiving> BeginReceive(const std::string& sop_instance_uid);
  // A copy of the UID lies sealed in a segment with no row naming it (refused for a reason that
  // may pass, its voiding failed, its write failed after the trailer): every later row of the
  // UID in this process commits synced, so that no replay can prefer that copy.
  void KeepsSealedCopy(const std::string& sop_instance_uid);

  // Stores of UIDs on one stripe run one at a time (tests pick UIDs on two to overlap them).
  static size_t SopLockStripe(const std::string& sop_instance_uid) {
    return std::hash<std::string>{}(sop_instance_uid) % kSopLockStripes;
  }

 private:
  // The study is indexed for another member hospital.
  bool ForeignStudy(const InstanceSummary& summary, const StoreRequest& request);
  static StoreOutcome ForeignStudyRefusal(const InstanceSummary& summary);
  StoreOutcome StoreExisting(const StoreRequest& request, const NewInstance& instance);
  // Whether the object at an indexed path is gone (NotFound; not merely unreadable).
  bool StoredObjectMissing(const std::string& relative_path) const;
  // A row whose object was missing, restored by a re-send (placed at the row's path, or the row
  // moved to where this copy lies): kept if it is the row's object.
  // `companions`: placed, indexed with `also` (WriteAlso); the caller removes them on a refusal.
  StoreOutcome StoreRestored(const StoreRequest& request, const NewInstance& instance, const StoredInstance& indexed,
                             const std::vector<NewInstance>& companions);
  // The UID is indexed already: an identical re-send (either tier) is stored, else refused.
  // `received_range`: the received object is that part of `received` (a segment).
  StoreOutcome StoreResent(const StoreRequest& request, const NewInstance& instance,
                           const std::filesystem::path& received, const StoredInstance& indexed,
                           const std::vector<NewInstance>& companions, const ByteRange* received_range = nullptr);
  // Companions ready for the index write: files placed, small ones' bytes held here.
  // Move-only: instances' data views point into `data`, whose list nodes a move keeps and a copy
  // would not.
  struct Companions {
    Companions() = default;
    Companions(Companions&&) = default;
    Companions& operator=(Companions&&) = default;
    Companions(const Companions&) = delete;
    Companions& operator=(const Companions&) = delete;
    std::vector<NewInstance> instances;
    std::list<std::string> data;  // the bytes the small ones' NewInstance::data point into
  };
  // ingest_companions.cc: the companions' temp files removed on every return; their placement
  // before the index write, their rows inside it, their files removed when it fails.
  static std::list<TempFileGuard> GuardCompanions(const StoreRequest& request);
  Result<Companions> PlaceCompanions(const StoreRequest& request);
  // Reads a received file into `bytes` when it is small enough for the index; false otherwise.
  bool LoadIfSmall(const std::filesystem::path& file, std::string* bytes) const;
  // `also`, then the companions unless request.companions_wanted says no; `*indexed` tells which.
  Index::WriteFn WithCompanions(const std::vector<NewInstance>& placed, const StoreRequest& request, bool* indexed);
  // An object indexed before: `also` and the companions in a write of their own; the companions'
  // files removed unless they were indexed.
  Status WriteAlso(const StoreRequest& request, const std::vector<NewInstance>& placed);
  void RemoveCompanions(const std::vector<NewInstance>& placed);

  ObjectStore& store_;
  Index& index_;
  Clock clock_;
  std::array<std::mutex, kSopLockStripes> sop_locks_;
  // Under the SOP lock: whether the object's row may commit unsynced, noting it as pending if so.
  bool ClaimUnsyncedRow(const std::string& sop_instance_uid);
  void UnsyncedRowCommitted(const std::string& sop_instance_uid, bool committed);
  std::mutex receiving_mu_;
  std::unordered_map<std::string, int> receiving_;  // guarded by receiving_mu_: UID -> associations
  // Guarded by receiving_mu_: UID -> the index's sync epoch read after its row committed unsynced
  // (durable once the epoch moves past it); kPending while the commit runs.
  std::unordered_map<std::string, uint64_t> unsynced_rows_;
  int rows_since_prune_ = 0;  // guarded by receiving_mu_
  // Guarded by receiving_mu_: KeepsSealedCopy's UIDs; past kMaxSealedCopies, every row syncs.
  std::unordered_set<std::string> sealed_copies_;
  bool sealed_copies_full_ = false;
  static constexpr size_t kMaxSealedCopies = 100000;
  static constexpr uint64_t kPending = UINT64_MAX;
};

}  // namespace teleread
