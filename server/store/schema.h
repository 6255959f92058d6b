#pragma once
#include "server/store/sqlite.h"

namespace teleread {

// Brings the index to the newest schema version, one numbered migration per transaction.
// Refuses a database written by a newer TeleRead.
Status MigrateSchema(Database& db);
int LatestSchemaVersion();
// The index's schema version; 0 for a database TeleRead never migrated.
Result<int> SchemaVersion(Database& db);

}  // namespace teleread
