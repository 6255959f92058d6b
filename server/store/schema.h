#pragma once
#include "server/store/sqlite.h"

namespace teleread {

// Brings the index to the newest schema version, one numbered migration per transaction.
// Refuses a database written by a newer TeleRead.
Status MigrateSchema(Database& db);
int LatestSchemaVersion();

}  // namespace teleread
