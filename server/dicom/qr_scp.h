#pragma once
// Query/retrieve on an accepted association: C-FIND, C-MOVE and C-GET, each scoped to the
// calling member's studies (centre AE titles see all), each logged with the caller.
// DCMTK types appear here only as opaque pointers; the listener owns the association.
#include <cstdint>
#include <filesystem>
#include <string>

#include "common/config.h"
#include "server/reading/caller_policy.h"
#include "server/store/audit_log.h"
#include "server/store/object_store.h"
#include "server/store/query.h"

struct T_ASC_Association;
struct T_DIMSE_C_FindRQ;
struct T_DIMSE_C_MoveRQ;
struct T_DIMSE_C_GetRQ;
class OFCondition;

namespace teleread {

class DicomTls;

struct QrEnv {
  const Config& config;
  const QueryEngine& engine;
  const ObjectStore& store;
  const Caller& caller;
  const std::string& peer;
  int dimse_timeout;
  const DicomTls* tls = nullptr;  // client contexts for destinations with tls = true
  AuditLog* audit = nullptr;      // every query and retrieve is written here before it is served
};

// The abstract syntaxes of the Patient and Study Root FIND, MOVE and GET models.
extern const char* const kQueryRetrieveSopClasses[];
extern const int kNumQueryRetrieveSopClasses;

// A sub-operation count as DIMSE carries it (US): counts above 65535 are sent as 65535, never wrapped.
uint16_t SubOperationCount(uint64_t count);

// A C-FIND/C-MOVE/C-GET identifier as the listener receives it (a file written by
// ReceiveDataSet) read as a request of model `sop_class` within `member_scope` (empty: the
// centre's), exactly as the services read it. InvalidArgument with the Error Comment otherwise.
// For the fuzz target; the services read theirs inline.
Result<FindRequest> ReadQueryIdentifier(const std::filesystem::path& file, const std::string& sop_class,
                                        const std::string& member_scope);

OFCondition ServeFind(T_ASC_Association* assoc, unsigned char pres_id, T_DIMSE_C_FindRQ& req, const QrEnv& env);
OFCondition ServeMove(T_ASC_Association* assoc, unsigned char pres_id, T_DIMSE_C_MoveRQ& req, const QrEnv& env);
OFCondition ServeGet(T_ASC_Association* assoc, unsigned char pres_id, T_DIMSE_C_GetRQ& req, const QrEnv& env);

}  // namespace teleread
