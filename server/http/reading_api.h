#pragma once
// The reading API (/api/v1/...), /healthz and /metrics: who the caller is, from its client
// certificate; what it may see and do; the JSON in and out. Transport-free, so tests can call
// Handle directly as well as over HTTPS. See docs/api.md.
//
// Thread-safety: Handle may be called from many threads.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include <functional>
#include <vector>

#include "common/config.h"
#include "common/report_template.h"
#include "server/http/https_server.h"
#include "server/http/worklist_page_cache.h"
#include "server/http/worklist_read_ahead.h"
#include "server/pki/certificate_expiry.h"
#include "server/reading/critical_results.h"
#include "server/reading/outbox.h"
#include "server/reading/refusal_audit.h"
#include "server/reading/report_desk.h"
#include "server/reading/worklist.h"
#include "server/store/object_store.h"
#include "server/store/study_reads.h"

namespace teleread {

struct Identity {
  std::string id;  // radiologist id, the admin's common name, or the member hospital's id
  bool admin = false;
  std::string member_id;  // set for a member hospital: it sees its own studies' reports only
};

// Prometheus text from another part of the server (the DICOM listener's counters), for /metrics.
using MetricsSource = std::function<std::string()>;

class ReadingApi {
 public:
  ReadingApi(const Config& config, Worklist& worklist, const StudyReads& reads, const ObjectStore& store,
             std::vector<MetricsSource> metrics, ReportDesk* desk = nullptr, DeliveryOutbox* outbox = nullptr,
             CertificateExpiry* certificates = nullptr, CriticalResults* critical = nullptr)
      : config_(config),
        worklist_(worklist),
        reads_(reads),
        store_(store),
        metrics_(std::move(metrics)),
        desk_(desk),
        outbox_(outbox),
        certificates_(certificates),
        critical_(critical),
        refusals_(
            [this](const AuditEntry& e) { return worklist_.Audit(e.actor, e.action, e.study_instance_uid, e.detail); },
            NowMs) {}

  HttpResponse Handle(const HttpRequest& request, const PeerCertificate& peer);
  // Before any body is read (an HttpGate): refuses a certificate that stands for nobody here and
  // a body on a route that takes none from this caller; sets the route's body limit. The refusal
  // of a certificate that stands for nobody is deferred (its audit entry waits for a commit).
  std::optional<HttpResponse> Admit(const HttpRequest& head, const PeerCertificate& peer, uint64_t& body_limit);
  // The report templates served to `report new`; set before serving.
  void SetTemplates(std::vector<ReportTemplate> templates) { templates_ = std::move(templates); }

  // Reads kept worklist pages again after each change, before their callers ask
  // (worklist_read_ahead.h); the server starts it, tests that count reads need not.
  void StartReadAhead(std::chrono::milliseconds poll = WorklistReadAhead::kDefaultPoll,
                      std::chrono::milliseconds armed = WorklistReadAhead::kDefaultArmed);
  WorklistReadAhead* read_ahead() { return read_ahead_.get(); }  // null until started

  // The radiologist or admin a certificate stands for; nullopt when it stands for nobody here.
  std::optional<Identity> Identify(const PeerCertificate& peer) const;

 private:
  HttpResponse Route(const HttpRequest& request, const Identity& who);
  // `gzip`: the caller accepts a gzip answer (Accept-Encoding).
  HttpResponse WorklistPage(const std::string& query, const Identity& who, bool gzip);
  // The page's items, kept (pages_) or read; null when the index cannot be read.
  // `filter` clamped as the store reads it.
  std::shared_ptr<const WorklistPageCache::Page> WorklistItems(const WorklistFilter& filter, const Identity& who);
  // One read of the page for `reader`, as kept: its JSON and when its rows next read differently.
  WorklistPageCache::Read ReadPage(const WorklistFilter& filter, const std::string& reader);
  HttpResponse Study(const std::string& uid, const Identity& who);
  HttpResponse Instance(const std::string& uid, const std::string& sop, const Identity& who);
  HttpResponse Priors(const std::string& uid, const Identity& who);
  HttpResponse Archive(const std::string& uid, const Identity& who);
  // A stored object (either tier) as application/dicom.
  HttpResponse StoredObject(const std::string& relative_path) const;
  HttpResponse ClaimAction(const std::string& uid, const std::string& action, const std::string& query,
                           const Identity& who);
  HttpResponse Metrics();
  HttpResponse SubmitReport(const std::string& uid, const HttpRequest& req, const Identity& who);
  // Reports of one study, or matching ?study= / ?accession= / ?patient=, within the caller's scope.
  HttpResponse Reports(const std::string& study_uid, const std::string& query, const Identity& who);
  HttpResponse ReportFile(const std::string& sop, const Identity& who);
  // report_pdf_api.cc: GET /api/v1/reports/{uid}/pdf[?format=pdf|dicom], the report's PDF copy.
  HttpResponse ReportPdf(const std::string& sop, const std::string& format, const Identity& who);
  HttpResponse Deliveries(const std::string& query, const Identity& who);
  // critical_api.cc: GET /api/v1/critical[?state=], POST /api/v1/reports/{uid}/acknowledge.
  HttpResponse CriticalList(const std::string& state, const Identity& who);
  HttpResponse Acknowledge(const std::string& sop, const std::string& by, const HttpRequest& req, const Identity& who);
  std::string CriticalMetrics() const;
  // template_api.cc: GET /api/v1/studies/{uid}/template[?name=].
  HttpResponse StudyTemplate(const std::string& uid, const std::string& name, const Identity& who);

  const Config& config_;
  Worklist& worklist_;
  const StudyReads& reads_;
  const ObjectStore& store_;
  std::vector<MetricsSource> metrics_;
  ReportDesk* desk_;
  DeliveryOutbox* outbox_;
  CertificateExpiry* certificates_;
  CriticalResults* critical_;
  std::vector<ReportTemplate> templates_;
  std::atomic<uint64_t> requests_{0}, refused_{0};
  RefusalAudit refusals_;  // unknown certificates: one audit entry per caller and minute
  WorklistPageCache pages_;
  std::unique_ptr<WorklistReadAhead> read_ahead_;  // after pages_: stopped before it goes
};

}  // namespace teleread
