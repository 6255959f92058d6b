#pragma once
// Storage Commitment Push Model SCP (PS3.4 Annex J) over DIMSE: reads an N-ACTION-RQ's
// Transaction UID and Referenced SOP Sequence, has reading/ commit what the centre holds for
// that member, answers N-ACTION-RSP, then the N-EVENT-REPORT with the committed instances and
// the failed ones with their reasons: on the same association when the requester proposed the
// SCU/SCP role for the SOP class (it stays to listen), else on a new association to the member's
// delivery AE after the requester's association has ended (the SCP proposing the SCP role).
//
// Thread-safety: called on the association's worker thread.
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "server/dicom/dicom_tls.h"
#include "server/reading/caller_policy.h"
#include "server/reading/storage_commitment.h"
#include "server/store/object_store.h"

struct T_ASC_Association;
struct T_DIMSE_N_ActionRQ;
class OFCondition;

namespace teleread {

struct CommitmentEnv {
  StorageCommitment& service;
  const Config& config;
  const ObjectStore& store;
  const DicomTls* tls;
  std::string centre_ae;
  int timeout_seconds;
};

// An N-EVENT-REPORT still to be sent on a new association.
struct CommitmentReport {
  std::string member_id;
  std::string transaction_uid;
  CommitResult result;
};

// Serves one N-ACTION-RQ on `assoc`. A bad condition: the association is broken. `deferred` is
// set when the report must go on a new association (SendCommitmentReport, once this one ends).
OFCondition ServeCommitment(T_ASC_Association* assoc, unsigned char pres_id, const T_DIMSE_N_ActionRQ& req,
                            const Caller& caller, const CommitmentEnv& env, std::optional<CommitmentReport>* deferred);

// Opens an association to the member's delivery AE and sends the report; logs the outcome.
void SendCommitmentReport(const CommitmentReport& report, const CommitmentEnv& env);

}  // namespace teleread
