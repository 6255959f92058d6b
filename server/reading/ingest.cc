#include "server/reading/ingest.h"

#include <fstream>
#include <iterator>

#include "common/log.h"
#include "server/store/direct_file.h"

namespace teleread {
namespace {

StoreOutcome Refuse(IngestCode code, std::string why) { return StoreOutcome{code, std::move(why), false, 0}; }

// A refused index write: its study or series belongs elsewhere (0x0124), or storage failed.
IngestCode RefusalFor(const Status& s) {
  return s.code() == Status::Code::kConflict || s.code() == Status::Code::kPermissionDenied ? IngestCode::kNotAuthorized
                                                                                            : IngestCode::kNoStorage;
}

IngestCode CodeFor(const Status& s) {
  return s.code() == Status::Code::kNoSpace || s.code() == Status::Code::kIOError ? IngestCode::kNoStorage
                                                                                  : IngestCode::kUnreadable;
}

}  // namespace

Ingest::Ingest(ObjectStore& store, Index& index, Clock clock)
    : store_(store), index_(index), clock_(std::move(clock)) {}

bool Ingest::LoadIfSmall(const std::filesystem::path& file, std::string* bytes) const {
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(file, ec);
  if (ec || size == 0 || size > store_.small_object_bytes()) return false;
  std::ifstream in(file, std::ios::binary);
  std::string read((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) return false;
  if (read.size() != size) return false;
  *bytes = std::move(read);
  return true;
}

bool Ingest::SegmentCopyUnneeded(const StoreRequest& request, const StoreOutcome& outcome) {
  switch (outcome.code) {
    case IngestCode::kStored:
      return !outcome.stored_new && !index_.HasPath(request.segment_object);
    case IngestCode::kDifferentContent:
    case IngestCode::kNotAuthorized:
    case IngestCode::kDoesNotMatch:
      return true;
    case IngestCode::kNoStorage:
    case IngestCode::kUnreadable:
      return false;
  }
  return false;
}

StoreOutcome Ingest::Store(const StoreRequest& req) {
  TempFileGuard guard(req.temp_file);
  const std::list<TempFileGuard> companion_guards = GuardCompanions(req);

  // The tier: an object received into memory, or a small file (the report desk's), is kept in
  // the index; it is parsed where it lies. A memory file holds it only for a reader that needs a
  // file: a deflated data set's parse, a re-send's comparison.
  std::string loaded;
  const std::string& bytes = !req.bytes.empty() || !LoadIfSmall(req.temp_file, &loaded) ? req.bytes : loaded;
  const bool in_index = !bytes.empty();
  ObjectHandle memory;
  auto received = [&]() -> Result<std::filesystem::path> {
    if (!in_index) return req.temp_file;
    if (memory.path().empty()) {
      Result<ObjectHandle> m = ObjectHandle::Memory(bytes);
      if (!m.ok()) return m.status();
      memory = std::move(m.value());
    }
    return memory.path();
  };

  // Received into a segment (durable already): parsed, indexed and compared where it lies; a
  // refusal leaves its space unused.
  const bool in_segment = !req.segment_object.empty();
  const bool placed_file = !in_index && !in_segment;
  ObjectHandle segment;
  if (in_segment) {
    Result<ObjectHandle> opened = store_.Open(req.segment_object);
    if (!opened.ok()) return Refuse(IngestCode::kNoStorage, opened.status().message());
    segment = std::move(opened.value());
  }
  const ByteRange segment_range{segment.offset(), segment.length()};

  Result<InstanceSummary> summary = Status::InvalidArgument("not parsed");
  if (req.summary) {
    summary = *req.summary;
  } else if (in_index) {
    summary = ReadInstanceSummaryFromMemory(bytes);
  } else if (in_segment) {
    summary = ReadInstanceSummary(segment.path(), segment_range, req.head);
  }
  if (!req.summary && !in_segment &&
      (!in_index || summary.status().code() == Status::Code::kInvalidArgument)) {  // or deflated
    Result<std::filesystem::path> file = received();
    if (!file.ok()) return Refuse(IngestCode::kNoStorage, file.status().message());
    summary = ReadInstanceSummary(file.value(), in_index ? std::string_view() : std::string_view(req.head));
  }
  if (!summary.ok()) return Refuse(IngestCode::kUnreadable, summary.status().message());
  const InstanceSummary& s = summary.value();
  if (s.sop_instance_uid.empty()) return Refuse(IngestCode::kDoesNotMatch, "no SOP Instance UID");
  if (s.study_instance_uid.empty()) return Refuse(IngestCode::kDoesNotMatch, "no Study Instance UID");
  if (s.series_instance_uid.empty()) return Refuse(IngestCode::kDoesNotMatch, "no Series Instance UID");
  if (s.sop_class_uid != req.negotiated_sop_class_uid) {
    return Refuse(IngestCode::kDoesNotMatch,
                  "SOP Class " + s.sop_class_uid + " differs from the negotiated " + req.negotiated_sop_class_uid);
  }
  if (s.sop_instance_uid != req.affected_sop_instance_uid) {
    return Refuse(IngestCode::kDoesNotMatch, "SOP Instance UID differs from the C-STORE request's");
  }
  // A file is checked before it is placed, and so is an object with companions (before they are
  // placed); any other object in the index is checked by its index write alone (a read
  // transaction fewer per object), which refuses a foreign study with PermissionDenied.
  std::optional<std::string> owner;
  if (!in_index || !req.companions.empty()) {
    owner = index_.StudyOwner(s.study_instance_uid);
    if (owner && *owner != req.member_id) return ForeignStudyRefusal(s);
  }

  // The receiver's sync of a segment object ran while it was parsed and checked: its row comes after
  // (waited for outside the UID's lock, which other copies of the UID wait for).
  if (req.segment_sync != nullptr) {
    if (int err = req.segment_sync->Wait(); err != 0) {
      return Refuse(IngestCode::kNoStorage, Status::FromErrno(err, "fdatasync " + req.segment_object).message());
    }
  }

  // One SOP Instance UID is placed and indexed by one association at a time, so a failed index
  // write can remove the file it just placed without racing a concurrent identical re-send.
  std::lock_guard<std::mutex> sop_lock(sop_locks_[SopLockStripe(s.sop_instance_uid)]);
  std::error_code ec;
  NewInstance instance{s,
                       req.member_id,
                       req.calling_ae_title,
                       in_index     ? ObjectStore::InIndexPathFor(s.sop_instance_uid)
                       : in_segment ? req.segment_object
                                    : ObjectStore::RelativePathFor(s.sop_instance_uid),
                       in_index     ? bytes.size()
                       : in_segment ? segment_range.length
                                    : std::filesystem::file_size(req.temp_file, ec),
                       clock_(),
                       bytes};
  if (placed_file) {
    Result<ObjectStore::Placed> placed = store_.Place(req.temp_file, instance.relative_path);
    if (!placed.ok()) return Refuse(CodeFor(placed.status()), placed.status().message());
    if (placed.value() == ObjectStore::Placed::kExisting) return StoreExisting(req, instance);
  }

  Result<Companions> companions = PlaceCompanions(req);
  if (!companions.ok()) {
    if (placed_file) std::filesystem::remove(store_.Absolute(instance.relative_path), ec);
    return Refuse(CodeFor(companions.status()), companions.status().message());
  }
  // In the index tier the object's bytes commit with its row: one WAL sync for both. A synced
  // segment object's row needs none: its trailer is the durable record recovery indexes from.
  // But a study's first row is synced (a row visible to StudyOwner, or kept by it, is durable):
  // start-up replays segments in the order they were made, not the order of the commits, and must
  // find each study's owner as it was, so that no replay hands a study to another member.
  // And none while another copy of its UID arrives (Receiving).
  bool companions_indexed = false;
  const bool unsynced_row = in_segment && req.segment_synced && owner && !req.also && req.companions.empty() &&
                            ClaimUnsyncedRow(s.sop_instance_uid);
  Status st =
      index_.AddInstance(instance, WithCompanions(companions->instances, req, &companions_indexed),
                         unsynced_row ? Index::Durability::kRebuildable : Index::Durability::kSynced, req.coming);
  if (unsynced_row) UnsyncedRowCommitted(s.sop_instance_uid, st.ok());
  if (!st.ok()) {
    // Its study is another member's: refused by the write, or (the write failed otherwise: a lost
    // batch, a full disk) found now, so that the sender is told 0x0124 rather than retrying into
    // 0xA700. A study's owner never changes; a kConflict write checked it already.
    const bool denied = st.code() == Status::Code::kPermissionDenied;
    if (denied || (in_index && st.code() != Status::Code::kConflict && ForeignStudy(s, req))) {
      RemoveCompanions(companions->instances);
      if (placed_file) std::filesystem::remove(store_.Absolute(instance.relative_path), ec);
      return ForeignStudyRefusal(s);  // the write's own PermissionDenied says the same
    }
    // Indexed before (in either tier; found only now, not looked up for every object): a re-send.
    std::optional<StoredInstance> indexed;
    if (st.code() == Status::Code::kConflict) indexed = index_.FindInstance(s.sop_instance_uid);
    // Place found no file where the row points: the row's file was missing and is now restored.
    // Or the row's object is lost (a file or segment removed by hand) and this copy lies
    // elsewhere (a segment, or a file where the lost one was in a segment): the row takes it.
    if (indexed && ((placed_file && indexed->relative_path == instance.relative_path) ||
                    (!in_index && indexed->relative_path != instance.relative_path &&
                     StoredObjectMissing(indexed->relative_path)))) {
      StoreOutcome restored = StoreRestored(req, instance, *indexed, companions->instances);
      if (restored.code != IngestCode::kStored) RemoveCompanions(companions->instances);
      return restored;
    }
    StoreOutcome outcome = Refuse(RefusalFor(st), st.message());
    if (indexed) {
      Result<std::filesystem::path> file = in_index     ? received()
                                           : in_segment ? Result<std::filesystem::path>(segment.path())
                                                        : store_.Absolute(instance.relative_path);
      outcome = file.ok() ? StoreResent(req, instance, file.value(), *indexed, companions->instances,
                                        in_segment ? &segment_range : nullptr)
                          : Refuse(IngestCode::kNoStorage, file.status().message());
    }
    if (outcome.code != IngestCode::kStored) RemoveCompanions(companions->instances);
    // Nothing may stay that the sender was not told was stored.
    if (placed_file) std::filesystem::remove(store_.Absolute(instance.relative_path), ec);
    if (!indexed) spdlog::error("index write failed for sop={}: {}", s.sop_instance_uid, st.ToString());
    return outcome;
  }
  if (!companions_indexed) RemoveCompanions(companions->instances);
  return StoreOutcome{IngestCode::kStored, "", true, instance.size_bytes};
}

Ingest::Receiving::~Receiving() {
  if (ingest_ == nullptr) return;
  std::lock_guard<std::mutex> lock(ingest_->receiving_mu_);
  auto it = ingest_->receiving_.find(uid_);
  if (it != ingest_->receiving_.end() && --it->second == 0) ingest_->receiving_.erase(it);
}

Result<Ingest::Receiving> Ingest::BeginReceive(const std::string& sop_instance_uid) {
  bool unsynced = false;
  {
    std::lock_guard<std::mutex> lock(receiving_mu_);
    ++receiving_[sop_instance_uid];
    auto it = unsynced_rows_.find(sop_instance_uid);
    if (it != unsynced_rows_.end() && it->second != kPending && index_.sync_epoch() > it->second) {
      unsynced_rows_.erase(it);
    } else {
      unsynced = it != unsynced_rows_.end();
    }
  }
  Receiving receiving(this, sop_instance_uid, Index::Coming());
  if (unsynced) {
    // Its row's commit may still be running, under the SOP lock: waited for, then made durable.
    { std::lock_guard<std::mutex> sop_lock(sop_locks_[SopLockStripe(sop_instance_uid)]); }
    if (Status s = index_.SyncNow(); !s.ok()) return s;
  }
  // Announced only now: a batch gathered for it could hold the row waited for above.
  receiving.coming_ = index_.ExpectWrite();
  return receiving;
}

void Ingest::KeepsSealedCopy(const std::string& sop_instance_uid) {
  std::lock_guard<std::mutex> lock(receiving_mu_);
  if (sealed_copies_.size() < kMaxSealedCopies) {
    sealed_copies_.insert(sop_instance_uid);
  } else {
    sealed_copies_full_ = true;
  }
}

bool Ingest::ClaimUnsyncedRow(const std::string& sop_instance_uid) {
  std::lock_guard<std::mutex> lock(receiving_mu_);
  auto it = receiving_.find(sop_instance_uid);
  if (it != receiving_.end() && it->second > 1) return false;  // another copy is arriving
  if (sealed_copies_full_ || sealed_copies_.count(sop_instance_uid) != 0) return false;
  // A row of the UID not yet durable (recovery's, refused again as a conflict): left as it is.
  auto row = unsynced_rows_.find(sop_instance_uid);
  if (row != unsynced_rows_.end() && (row->second == kPending || index_.sync_epoch() <= row->second)) return false;
  unsynced_rows_[sop_instance_uid] = kPending;
  return true;
}

void Ingest::UnsyncedRowCommitted(const std::string& sop_instance_uid, bool committed) {
  std::lock_guard<std::mutex> lock(receiving_mu_);
  if (!committed) {
    unsynced_rows_.erase(sop_instance_uid);
    return;
  }
  const uint64_t epoch = index_.sync_epoch();  // read after the commit: durable once past it
  unsynced_rows_[sop_instance_uid] = epoch;
  // Rows made durable since are forgotten now and then: the map holds about a second's rows.
  if (++rows_since_prune_ >= 1024) {
    rows_since_prune_ = 0;
    for (auto it = unsynced_rows_.begin(); it != unsynced_rows_.end();) {
      it = it->second != kPending && epoch > it->second ? unsynced_rows_.erase(it) : std::next(it);
    }
  }
}

bool Ingest::StoredObjectMissing(const std::string& relative_path) const {
  Result<ObjectHandle> stored = store_.Open(relative_path);
  return !stored.ok() && stored.status().code() == Status::Code::kNotFound;
}

bool Ingest::ForeignStudy(const InstanceSummary& s, const StoreRequest& req) {
  std::optional<std::string> owner = index_.StudyOwner(s.study_instance_uid);
  return owner && *owner != req.member_id;
}

StoreOutcome Ingest::ForeignStudyRefusal(const InstanceSummary& s) {
  return Refuse(IngestCode::kNotAuthorized, "study " + s.study_instance_uid + " was sent by another member hospital");
}

StoreOutcome Ingest::StoreResent(const StoreRequest& req, const NewInstance& instance,
                                 const std::filesystem::path& received, const StoredInstance& indexed,
                                 const std::vector<NewInstance>& companions, const ByteRange* received_range) {
  Result<ObjectHandle> stored = store_.Open(indexed.relative_path);
  if (!stored.ok()) {
    return Refuse(IngestCode::kNoStorage, "cannot read the stored copy: " + stored.status().message());
  }
  const ByteRange range{stored->offset(), stored->length()};
  Result<bool> same = SameDataSet(received, stored->path(), stored->ranged() ? &range : nullptr, received_range);
  if (!same.ok())
    return Refuse(IngestCode::kNoStorage, "cannot compare with the stored copy: " + same.status().message());
  if (!same.value()) {
    return Refuse(IngestCode::kDifferentContent,
                  "SOP Instance UID already stored with different content; the stored object is kept");
  }
  if (indexed.member_id != req.member_id) {
    return Refuse(IngestCode::kDifferentContent, "SOP Instance UID already stored for another member hospital");
  }
  if (Status st = WriteAlso(req, companions); !st.ok()) return Refuse(CodeFor(st), st.message());
  return StoreOutcome{IngestCode::kStored, "", false, instance.size_bytes};
}

StoreOutcome Ingest::StoreRestored(const StoreRequest& req, const NewInstance& instance, const StoredInstance& indexed,
                                   const std::vector<NewInstance>& companions) {
  const InstanceSummary& s = instance.summary;
  if (s.study_instance_uid != indexed.study_instance_uid || s.series_instance_uid != indexed.series_instance_uid ||
      req.member_id != indexed.member_id) {
    std::error_code ec;
    // A segment's space stays unused; a placed file goes.
    if (!ObjectStore::InSegment(instance.relative_path))
      std::filesystem::remove(store_.Absolute(instance.relative_path), ec);
    return Refuse(IngestCode::kDifferentContent,
                  "SOP Instance UID already indexed in another study, series or member; its file is missing");
  }
  // Durable already (Place fsync'd the file and its directory; a segment's range was synced).
  if (indexed.relative_path == instance.relative_path) {
    spdlog::warn("restored missing object file {} for sop={}", instance.relative_path, s.sop_instance_uid);
    if (Status st = WriteAlso(req, companions); !st.ok()) return Refuse(CodeFor(st), st.message());
    return StoreOutcome{IngestCode::kStored, "", false, instance.size_bytes};
  }
  bool companions_indexed = false;
  Status st = index_.RelocateInstance(s.sop_instance_uid, indexed.relative_path, instance.relative_path,
                                      instance.size_bytes, WithCompanions(companions, req, &companions_indexed));
  if (!st.ok() || !companions_indexed) RemoveCompanions(companions);
  if (!st.ok()) return Refuse(CodeFor(st), st.message());
  spdlog::warn("restored missing object {} for sop={} as {}", indexed.relative_path, s.sop_instance_uid,
               instance.relative_path);
  return StoreOutcome{IngestCode::kStored, "", false, instance.size_bytes};
}

StoreOutcome Ingest::StoreExisting(const StoreRequest& req, const NewInstance& instance) {
  // Compared with the indexed copy only: a file the row does not point to (a cross-tier re-send
  // cut short by a crash) is a stray that recovery quarantines, not the stored object.
  std::optional<StoredInstance> indexed = index_.FindInstance(instance.summary.sop_instance_uid);
  if (indexed) {
    Result<Companions> companions = PlaceCompanions(req);
    if (!companions.ok()) return Refuse(CodeFor(companions.status()), companions.status().message());
    StoreOutcome outcome = StoreResent(req, instance, req.temp_file, *indexed, companions->instances);
    if (outcome.code != IngestCode::kStored) RemoveCompanions(companions->instances);
    return outcome;
  }
  std::filesystem::path existing = store_.Absolute(instance.relative_path);
  Result<bool> same = SameDataSet(req.temp_file, existing);
  if (!same.ok())
    return Refuse(IngestCode::kNoStorage, "cannot compare with the stored copy: " + same.status().message());
  if (!same.value()) {
    return Refuse(IngestCode::kDifferentContent,
                  "SOP Instance UID already stored with different content; the stored object is kept");
  }
  // A file without its row: an earlier attempt stopped between placing and indexing, maybe
  // before the file or its entry was durable. Made so before its row is.
  if (Status st = SyncPath(existing); !st.ok()) return Refuse(CodeFor(st), st.message());
  if (Status st = SyncPath(existing.parent_path()); !st.ok()) return Refuse(CodeFor(st), st.message());
  Result<Companions> companions = PlaceCompanions(req);
  if (!companions.ok()) return Refuse(CodeFor(companions.status()), companions.status().message());
  bool companions_indexed = false;
  Status st = index_.AddInstance(instance, WithCompanions(companions->instances, req, &companions_indexed),
                                 Index::Durability::kSynced, req.coming);
  if (!st.ok() || !companions_indexed) RemoveCompanions(companions->instances);
  if (!st.ok()) {
    return Refuse(RefusalFor(st), st.message());
  }
  return StoreOutcome{IngestCode::kStored, "", true, instance.size_bytes};
}

}  // namespace teleread
