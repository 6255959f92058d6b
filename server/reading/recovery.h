#pragma once
// Start-up repair of the storage root after a crash or a restore: interrupted receptions are
// removed, objects that reached their final name without an index row are indexed, and so are
// objects found in segments past the last one a row names (each proven whole by its trailer,
// store/segment_trailer.h, and passed through Ingest's checks as if received again). Objects kept
// inside the index need nothing: their bytes commit with their row, both or neither.
#include "common/config.h"
#include "server/reading/ingest.h"
#include "server/store/index.h"
#include "server/store/object_store.h"

namespace teleread {

struct RecoveryReport {
  int temp_files_removed = 0;
  int temp_files_kept = 0;  // second names of placed objects that only fsck can mend: logged as errors
  int objects_reindexed = 0;
  int objects_unattributed = 0;     // no configured sender, or a stray copy of an indexed UID: quarantined
  int64_t rows_without_data = 0;    // "index:" rows without their bytes: never expected, reported
  int segment_objects_indexed = 0;  // found past a segment's last named object, and stored by Ingest
  int segment_objects_refused = 0;  // found so, and refused (no configured sender, Ingest's checks)
  int segment_objects_damaged = 0;  // found so, their bytes not those their trailer hashed: left out
};

Result<RecoveryReport> RecoverStorage(ObjectStore& store, Index& index, Ingest& ingest, const Config& config,
                                      int64_t now_ms);

}  // namespace teleread
