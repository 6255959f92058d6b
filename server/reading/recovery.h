#pragma once
// Start-up repair of the storage root after a crash: interrupted receptions are removed and
// objects that reached their final name without an index row are indexed.
#include "common/config.h"
#include "server/store/index.h"
#include "server/store/object_store.h"

namespace teleread {

struct RecoveryReport {
  int temp_files_removed = 0;
  int objects_reindexed = 0;
  int objects_unattributed = 0;  // no configured sender: moved to quarantine/
};

Result<RecoveryReport> RecoverStorage(ObjectStore& store, Index& index, const Config& config, int64_t now_ms);

}  // namespace teleread
