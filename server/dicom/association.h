#pragma once
// One accepted DICOM association, from A-ASSOCIATE-RQ to release: AE checks, negotiation, then
// the DIMSE loop (C-ECHO, C-STORE receipt into a file handed to Ingest, and query/retrieve via
// qr_scp). Our own loop rather than DcmSCP, whose config cannot hold a presentation context per
// storage SOP class (it stops at 128) and which hides the association from us.
//
// Thread-safety: RunAssociation runs on the listener's worker thread that owns the association;
// ListenerStats and MemberSlots are shared by all of them.
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "common/config.h"
#include "server/dicom/dicom_tls.h"
#include "server/reading/caller_policy.h"
#include "server/reading/ingest.h"
#include "server/reading/storage_commitment.h"
#include "server/store/audit_log.h"
#include "server/store/object_store.h"
#include "server/store/query.h"

struct T_ASC_Association;

namespace teleread {

struct ListenerStats {
  std::atomic<uint64_t> associations{0};
  std::atomic<uint64_t> rejected{0};
  std::atomic<uint64_t> stored{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> tls_associations{0};
  std::atomic<uint64_t> tls_refused{0};          // failed handshakes and certificates of the wrong member
  std::atomic<uint64_t> connections_refused{0};  // over the per-address cap
  std::atomic<uint64_t> accept_errors{0};        // EMFILE, ENFILE...: the acceptor backed off
  // Prometheus text, for /metrics.
  std::string Metrics() const;
};

// Associations open per member, against Member::max_associations.
class MemberSlots {
 public:
  bool TryEnter(const std::string& member_id, int limit);
  void Leave(const std::string& member_id);

 private:
  std::mutex mu_;
  std::map<std::string, int> active_;  // guarded by mu_
};

struct AssociationEnv {
  const Config& config;
  const QueryEngine& engine;
  const CallerPolicy& policy;
  Ingest& ingest;
  ObjectStore& store;
  ListenerStats& stats;
  MemberSlots& slots;
  const DicomTls* tls;
  std::string ae_title;
  uint64_t min_free_bytes;
  int dimse_timeout;
  AuditLog* audit;                // Q/R is audited here (nullptr: not audited)
  StorageCommitment* commitment;  // nullptr: N-ACTION is not served
};

// Serves `assoc` (received, not yet accepted) to its end and destroys it.
void RunAssociation(T_ASC_Association* assoc, const AssociationEnv& env, TlsPeer tls);

}  // namespace teleread
