#pragma once
// A Storage Commitment Push Model SCU, as a member's PACS runs it (DCMTK association and DIMSE
// calls, optionally over DICOM TLS): one N-ACTION request and, when it stays on the association,
// the N-EVENT-REPORT there. Used by `teleread-samples commit` (the demo) and the tests.
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace teleread::samples {

struct CommitReply {
  std::string error;  // empty when the exchange completed
  uint16_t action_status = 0xFFFF;
  uint16_t event_type = 0;                               // 1: all committed, 2: some failed; 0: no report received
  std::string transaction_uid;                           // as reported back
  std::vector<std::string> committed;                    // SOP Instance UIDs
  std::vector<std::pair<std::string, uint16_t>> failed;  // SOP Instance UID, Failure Reason
};

struct CommitPeer {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string calling_ae, called_ae = "LX_READ";
  std::string tls_key, tls_certificate, tls_ca;  // all three: DICOM TLS (BCP 195)
};

// Requests commitment of `instances` (SOP Class UID, SOP Instance UID). With `stay`, proposes
// the SCU/SCP role and waits for the report on the same association; otherwise releases after
// the N-ACTION response.
CommitReply RequestCommitment(const CommitPeer& peer, const std::vector<std::pair<std::string, std::string>>& instances,
                              const std::string& transaction_uid, bool stay);

// Every DICOM file under `dir` as (SOP Class UID, SOP Instance UID).
std::vector<std::pair<std::string, std::string>> InstancesUnder(const std::filesystem::path& dir);
std::string NewTransactionUid();

}  // namespace teleread::samples
