#pragma once
// Wires the server's parts together in dependency order and stops them in reverse.
#include <memory>

#include "common/config.h"
#include "server/caller_policy.h"
#include "server/dicom_listener.h"
#include "server/dicom_tls.h"
#include "server/index.h"
#include "server/ingest.h"
#include "server/object_store.h"
#include "server/outbox.h"
#include "server/reading_api.h"
#include "server/report_desk.h"
#include "server/reading_tasks.h"
#include "server/revocation.h"
#include "server/worklist.h"

namespace teleread {

int64_t NowMs();

class ServerApp {
 public:
  explicit ServerApp(Config config);
  ~ServerApp();
  // Opens the storage and index, repairs after a crash, starts the listener and promoter.
  Status Start();
  void Stop();
  uint16_t dicom_port() const { return listener_ ? listener_->port() : 0; }
  uint16_t dicom_tls_port() const { return listener_ ? listener_->tls_port() : 0; }
  Index& index() { return *index_; }

 private:
  // Puts the centre's own certificates under the expiry watch; fails on an unreadable one.
  Status WatchOwnCertificates();

  Config config_;
  std::unique_ptr<ObjectStore> store_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<Ingest> ingest_;
  std::unique_ptr<CallerPolicy> policy_;
  std::unique_ptr<QueryEngine> engine_;
  std::unique_ptr<CertificateExpiry> expiry_;
  std::unique_ptr<DicomTls> tls_;
  std::unique_ptr<DicomListener> listener_;
  std::unique_ptr<ReadingTaskPromoter> promoter_;
  std::unique_ptr<Worklist> worklist_;
  std::unique_ptr<DeliveryOutbox> outbox_;
  std::unique_ptr<ReportDesk> desk_;
  std::unique_ptr<ReadingApi> api_;
  std::unique_ptr<HttpsServer> https_;
  std::unique_ptr<RevocationLists> revocation_;  // after what it feeds: stopped first
};

// Opens the index under a storage root (for the status command).
Result<std::unique_ptr<Index>> OpenIndex(const std::filesystem::path& storage_root);

}  // namespace teleread
