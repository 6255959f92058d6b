#pragma once
// Start-up repair of the storage root after a crash: interrupted receptions are removed and
// objects that reached their final name without an index row are indexed. Objects kept inside
// the index need nothing: their bytes commit with their row, both or neither.
#include "common/config.h"
#include "server/store/index.h"
#include "server/store/object_store.h"

namespace teleread {

struct RecoveryReport {
  int temp_files_removed = 0;
  int temp_files_kept = 0;  // second names of placed objects that only fsck can mend: logged as errors
  int objects_reindexed = 0;
  int objects_unattributed = 0;   // no configured sender, or a stray copy of an indexed UID: quarantined
  int64_t rows_without_data = 0;  // "index:" rows without their bytes: never expected, reported
};

Result<RecoveryReport> RecoverStorage(ObjectStore& store, Index& index, const Config& config, int64_t now_ms);

}  // namespace teleread
