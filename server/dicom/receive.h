#pragma once
// The data set that follows a DIMSE command, received exactly as it came over the wire after a
// meta header naming the presentation context's transfer syntax (the bytes DCMTK's
// DIMSE_createFilestream writes): into memory while it fits within `memory_limit` (a small
// C-STORE object, kept in the index), else into a temporary file of the object store. C-STORE
// objects and C-FIND/C-MOVE/C-GET identifiers alike are then read by DicomFile::Open with the
// same limits and never parsed in memory by DCMTK.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "server/store/direct_file.h"
#include "server/store/object_store.h"

struct T_ASC_Association;
class OFCondition;

namespace teleread {

struct ReceivedDataSet {
  enum class Outcome { kReceived, kCannotCreate, kWriteFailed };
  Outcome outcome = Outcome::kReceived;
  std::filesystem::path path;   // kReceived: the whole data set in a file; the caller removes it
  std::string bytes;            // kReceived with an empty path: the whole object, in memory (never
                                // with memory_limit 0, bar an empty data set)
  std::string segment_object;   // kReceived into a segment: its index path, "segments/<name>@<offset>+<length>",
                                // its bytes durable; space a refusal leaves there stays unused
  bool segment_synced = false;  // by its segment's fdatasync, trailer included (else only once the
                                // index commits: a pre-written segment, store/segments.h)
  // That fdatasync, possibly still running (the parse goes on meanwhile): its result must be
  // 0 before a row names segment_object. Destroying it waits for it.
  std::unique_ptr<PendingSync> segment_sync;
  std::string head;  // with a path or segment_object: the first bytes (up to memory_limit), which
                     // its parse reads from here (a file written with O_DIRECT from
                     // its first byte has none of them in the page cache)
};

// `durable`: an object whose fsync comes next, written to disk while the rest is arriving: with
// O_DIRECT past its head when the store's direct_io is on, its transfer syntax native and the
// file system takes it (server/store/direct_file.h). `lease` (with `durable`): a spilled object goes
// into the lease's segment rather than a file of its own, or into a file when it has none or
// the object outgrows it (the part written is copied); it is fdatasync'd here. A bad condition means the association
// broke mid-data-set: nothing is kept and nobody awaits an answer. A good one with an empty path: the storage could not
// take it and the rest of the data set was drained, so a failure status can be sent.
OFCondition ReceiveDataSet(T_ASC_Association* assoc, unsigned char pres_id, const std::string& sop_class_uid,
                           const std::string& sop_instance_uid, const ObjectStore& store, int timeout_seconds,
                           bool durable, ReceivedDataSet* out, uint64_t memory_limit = 0,
                           SegmentPool::Lease* lease = nullptr);

}  // namespace teleread
