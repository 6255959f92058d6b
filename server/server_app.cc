#include "server/server_app.h"

#include <chrono>
#include <tuple>

#include "common/dicom.h"
#include "common/log.h"
#include "common/signing.h"
#include "server/pdf/report_pdf.h"
#include "server/pki/pki.h"
#include "server/reading/recovery.h"

namespace teleread {

Result<std::unique_ptr<Index>> OpenIndex(const std::filesystem::path& storage_root) {
  return Index::Open(storage_root / "index.sqlite");
}

ServerApp::ServerApp(Config config) : config_(std::move(config)) {}

Status ServerApp::WatchOwnCertificates() {
  std::vector<std::pair<std::string, std::filesystem::path>> own;
  if (config_.https.enabled) {
    own = {{"https server", config_.https.certificate}, {"https CA", config_.https.ca}};
  }
  if (config_.dicom_tls.enabled) {
    own.emplace_back("dicom_tls certificate", config_.dicom_tls.certificate);
    own.emplace_back("dicom_tls CA", config_.dicom_tls.ca);
  }
  const int64_t now = NowMs() / 1000;
  // A CRL past its nextUpdate fails every handshake it applies to: watched like a certificate.
  for (const auto& [name, path, ca] :
       {std::tuple{std::string("https CRL"), config_.https.crl, config_.https.ca},
        std::tuple{std::string("dicom_tls CRL"), config_.dicom_tls.crl, config_.dicom_tls.ca}}) {
    if (path.empty()) continue;
    Result<int64_t> next_update = AddRevocationList(nullptr, path, ca);
    if (!next_update.ok()) return Status::InvalidArgument(name + ": " + next_update.status().message());
    expiry_->Observe(name, next_update.value(), now);
  }
  for (const auto& [name, path] : own) {
    Result<CertificateInfo> info = ReadCertificateInfo(path);
    if (!info.ok()) return Status::InvalidArgument(name + " " + path.string() + ": " + info.status().message());
    expiry_->Observe(name, info->not_after, now);
  }
  return Status::Ok();
}

ServerApp::~ServerApp() { Stop(); }

Status ServerApp::Start() {
  InitializeDicom();
  InitializeSigning();
  // Said now rather than at the first report, which would be refused without its PDF copy.
  if (Status font = CheckReportFont(); !font.ok()) spdlog::error("{}", font.message());
  store_ = std::make_unique<ObjectStore>(config_.centre.storage);
  if (Status s = store_->Prepare(); !s.ok()) return s;
  if (Status s = store_->LockForServer(); !s.ok()) return s;
  Result<std::unique_ptr<Index>> index = OpenIndex(config_.centre.storage);
  if (!index.ok()) return index.status();
  index_ = std::move(index.value());
  store_->set_small_object_bytes(config_.centre.small_object_bytes);
  store_->set_direct_io(config_.centre.direct_io);
  store_->UseIndex(index_.get());

  // Before any segment is made ready: the recovery reads segments no process writes.
  ingest_ = std::make_unique<Ingest>(*store_, *index_, NowMs);
  Result<RecoveryReport> recovered = RecoverStorage(*store_, *index_, *ingest_, config_, NowMs());
  if (!recovered.ok()) return recovered.status();
  if (recovered->temp_files_kept) {
    spdlog::error("recovery: {} temp file(s) kept in {}: each is a second name of a stored object; run fsck",
                  recovered->temp_files_kept, store_->Absolute("tmp").string());
  }
  if (recovered->temp_files_removed || recovered->objects_reindexed || recovered->objects_unattributed) {
    spdlog::warn("recovery: removed {} partial file(s), re-indexed {} object(s), quarantined {} unattributed",
                 recovered->temp_files_removed, recovered->objects_reindexed, recovered->objects_unattributed);
  }
  if (recovered->segment_objects_indexed || recovered->segment_objects_refused) {
    spdlog::warn("recovery: indexed {} object(s) found in segments past their last indexed one, left out {}",
                 recovered->segment_objects_indexed, recovered->segment_objects_refused);
  }
  if (Status s = store_->UseSegments(config_.centre.segment_mb << 20, config_.centre.segment_prewrite,
                                     config_.centre.min_free_disk_mb << 20);
      !s.ok()) {
    return s;
  }

  stores_ = std::make_unique<Stores>(*index_, NowMs);
  policy_ = std::make_unique<CallerPolicy>(config_);
  engine_ = std::make_unique<QueryEngine>(config_.centre.storage / "index.sqlite", index_->statistics_epoch());
  expiry_ = std::make_unique<CertificateExpiry>(config_.dicom_tls.expiry_warning_days);
  if (Status s = WatchOwnCertificates(); !s.ok()) return s;
  if (config_.dicom_tls.enabled) {
    Result<std::unique_ptr<DicomTls>> tls = DicomTls::Create(config_);
    if (!tls.ok()) return tls.status();
    tls_ = std::move(tls.value());
  }
  TaskPolicy policy;
  policy.sla_stat_ms = int64_t{config_.reading.sla_minutes_stat} * 60'000;
  policy.sla_high_ms = int64_t{config_.reading.sla_minutes_high} * 60'000;
  policy.sla_routine_ms = int64_t{config_.reading.sla_minutes_routine} * 60'000;
  for (const Member& m : config_.members) policy.member_default_priority.emplace_back(m.id, m.default_priority);
  commitment_ = std::make_unique<StorageCommitment>(stores_->commitments, policy, NowMs);
  listener_ = std::make_unique<DicomListener>(config_, *policy_, *ingest_, *store_, *engine_, tls_.get(), expiry_.get(),
                                              &stores_->audit, commitment_.get());
  if (Status s = listener_->Start(); !s.ok()) return s;
  worklist_ = std::make_unique<Worklist>(stores_->tasks, stores_->audit,
                                         int64_t{config_.reading.lease_minutes} * 60'000, NowMs, config_.radiologists);
  AnchorAudit();
  promoter_ =
      std::make_unique<ReadingTaskPromoter>(*index_, config_.centre.quiet_period_seconds, policy, NowMs, [this] {
        Result<int> expired = worklist_->ExpireLeases();
        if (expired.ok() && expired.value() > 0)
          spdlog::info("{} expired claim(s) returned to the worklist", expired.value());
        if (NowMs() - last_anchor_ms_ >= kAuditAnchorMs) AnchorAudit();
        static int64_t last_routing_check = 0;  // the promoter's thread only
        if (NowMs() - last_routing_check >= 2000) {
          last_routing_check = NowMs();
          (void)worklist_->FlagUnroutable();
        }
      });
  promoter_->Start();
  // Deliveries queued before a restart go out now.
  sender_ = std::make_unique<DicomReportSender>(config_.centre.ae_title, config_.reading.delivery_timeout_seconds,
                                                tls_.get());
  outbox_ = std::make_unique<DeliveryOutbox>(config_, stores_->deliveries, *store_, *sender_, NowMs);
  outbox_->Start();
  if (config_.https.enabled) {
    notifier_ = std::make_unique<WebhookNotifier>(config_, config_.reading.delivery_timeout_seconds);
    critical_ = std::make_unique<CriticalResults>(config_, stores_->critical, notifier_.get(), NowMs);
    critical_->Start();
    desk_ = std::make_unique<ReportDesk>(config_, stores_->reports, *store_, *ingest_, NowMs, [this] {
      outbox_->Wake();
      critical_->Wake();
    });
    std::vector<MetricsSource> metrics{[this] { return listener_->stats().Metrics(); },
                                       [this] { return https_ ? https_->stats().Metrics() : std::string(); }};
    api_ = std::make_unique<ReadingApi>(config_, *worklist_, stores_->reads, *store_, std::move(metrics), desk_.get(),
                                        outbox_.get(), expiry_.get(), critical_.get());
    try {
      api_->SetTemplates(LoadReportTemplates(config_.reading.templates));
    } catch (const ConfigError& e) {
      return Status::InvalidArgument(std::string("report templates: ") + e.what());
    }
    api_->StartReadAhead();
    https_ = std::make_unique<HttpsServer>(
        config_.https, [this](const HttpRequest& r, const PeerCertificate& p) { return api_->Handle(r, p); },
        [this](const HttpRequest& head, const PeerCertificate& p, uint64_t& limit) {
          return api_->Admit(head, p, limit);
        });
    if (Status s = https_->Start(config_.https.port); !s.ok()) return s;
  }
  revocation_ = std::make_unique<RevocationLists>(*expiry_, std::chrono::seconds(10));
  if (https_ && !config_.https.crl.empty())
    revocation_->Attach("https CRL", config_.https.crl, config_.https.ca, https_->ssl_context());
  if (tls_) {
    for (ssl_ctx_st* ctx : tls_->revocation_checked())
      revocation_->Attach("dicom_tls CRL", config_.dicom_tls.crl, config_.dicom_tls.ca, ctx);
  }
  revocation_->Start();
  spdlog::info("storage root {}; {} member hospital(s) configured", config_.centre.storage.string(),
               config_.members.size());
  return Status::Ok();
}

// The chain head goes to the log at start, every hour and at stop: a copy outside the database
// to compare `audit verify` with, so that a chain rewritten as a whole still shows.
void ServerApp::AnchorAudit() {
  last_anchor_ms_ = NowMs();
  if (Result<AuditHead> head = stores_->audit.Head(); head.ok()) {
    spdlog::info("audit chain head: entry {} {}", head->id, head->hash.empty() ? "(none)" : head->hash);
  } else {
    spdlog::error("audit chain head cannot be read: {}", head.status().message());
  }
}

void ServerApp::Stop() {
  if (revocation_) revocation_->Stop();
  revocation_.reset();
  if (https_) https_->Stop();
  https_.reset();
  api_.reset();
  desk_.reset();
  if (critical_) critical_->Stop();
  critical_.reset();
  notifier_.reset();
  if (outbox_) outbox_->Stop();
  outbox_.reset();
  sender_.reset();
  if (promoter_) promoter_->Stop();
  if (listener_) listener_->Stop();
  if (stores_ && promoter_) AnchorAudit();
  promoter_.reset();
  worklist_.reset();
  listener_.reset();
  commitment_.reset();
  engine_.reset();
  ingest_.reset();
  stores_.reset();
  index_.reset();
}

}  // namespace teleread
