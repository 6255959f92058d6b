#pragma once
// Wires the server's parts together in dependency order and stops them in reverse.
#include <atomic>
#include <memory>

#include "common/clock.h"
#include "common/config.h"
#include "server/dicom/dicom_tls.h"
#include "server/dicom/listener.h"
#include "server/dicom/report_sender.h"
#include "server/http/reading_api.h"
#include "server/http/webhook_notifier.h"
#include "server/pki/revocation.h"
#include "server/reading/caller_policy.h"
#include "server/reading/ingest.h"
#include "server/reading/outbox.h"
#include "server/reading/reading_tasks.h"
#include "server/reading/report_desk.h"
#include "server/reading/storage_commitment.h"
#include "server/reading/worklist.h"
#include "server/store/index.h"
#include "server/store/object_store.h"
#include "server/store/stores.h"

namespace teleread {

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
  // Logs the audit chain's head (the promoter thread calls it hourly; start and stop too).
  void AnchorAudit();
  static constexpr int64_t kAuditAnchorMs = 3600 * 1000;
  std::atomic<int64_t> last_anchor_ms_{0};

  Config config_;
  std::unique_ptr<ObjectStore> store_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<Stores> stores_;
  std::unique_ptr<Ingest> ingest_;
  std::unique_ptr<CallerPolicy> policy_;
  std::unique_ptr<QueryEngine> engine_;
  std::unique_ptr<CertificateExpiry> expiry_;
  std::unique_ptr<DicomTls> tls_;
  std::unique_ptr<StorageCommitment> commitment_;  // before the listener that uses it
  std::unique_ptr<DicomListener> listener_;
  std::unique_ptr<ReadingTaskPromoter> promoter_;
  std::unique_ptr<Worklist> worklist_;
  std::unique_ptr<DicomReportSender> sender_;
  std::unique_ptr<DeliveryOutbox> outbox_;
  std::unique_ptr<ReportDesk> desk_;
  std::unique_ptr<WebhookNotifier> notifier_;
  std::unique_ptr<CriticalResults> critical_;
  std::unique_ptr<ReadingApi> api_;
  std::unique_ptr<HttpsServer> https_;
  std::unique_ptr<RevocationLists> revocation_;  // after what it feeds: stopped first
};

// Opens the index under a storage root (for the status command).
Result<std::unique_ptr<Index>> OpenIndex(const std::filesystem::path& storage_root);

}  // namespace teleread
