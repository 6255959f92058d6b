#pragma once
// The reading API (/api/v1/...), /healthz and /metrics: who the caller is, from its client
// certificate; what it may see and do; the JSON in and out. Transport-free, so tests can call
// Handle directly as well as over HTTPS. See docs/api.md.
//
// Thread-safety: Handle may be called from many threads.
#include <atomic>
#include <string>

#include "common/config.h"
#include "server/dicom_listener.h"
#include "server/dicom_tls.h"
#include "server/https_server.h"
#include "server/index.h"
#include "server/object_store.h"
#include "server/outbox.h"
#include "server/report_desk.h"
#include "server/worklist.h"

namespace teleread {

struct Identity {
  std::string id;  // radiologist id, the admin's common name, or the member hospital's id
  bool admin = false;
  std::string member_id;  // set for a member hospital: it sees its own studies' reports only
};

class ReadingApi {
 public:
  ReadingApi(const Config& config, Index& index, Worklist& worklist, const ObjectStore& store,
             const ListenerStats* dicom_stats, ReportDesk* desk = nullptr, DeliveryOutbox* outbox = nullptr,
             CertificateExpiry* certificates = nullptr)
      : config_(config), index_(index), worklist_(worklist), store_(store), dicom_stats_(dicom_stats), desk_(desk),
        outbox_(outbox), certificates_(certificates) {}

  HttpResponse Handle(const HttpRequest& request, const PeerCertificate& peer);

  // The radiologist or admin a certificate stands for; nullopt when it stands for nobody here.
  std::optional<Identity> Identify(const PeerCertificate& peer) const;

 private:
  HttpResponse Route(const HttpRequest& request, const Identity& who);
  HttpResponse WorklistPage(const std::string& query, const Identity& who);
  HttpResponse Study(const std::string& uid, const Identity& who);
  HttpResponse Instance(const std::string& uid, const std::string& sop, const Identity& who);
  HttpResponse Priors(const std::string& uid, const Identity& who);
  HttpResponse Archive(const std::string& uid, const Identity& who);
  HttpResponse ClaimAction(const std::string& uid, const std::string& action, const std::string& query,
                           const Identity& who);
  HttpResponse Metrics();
  HttpResponse SubmitReport(const std::string& uid, const HttpRequest& req, const Identity& who);
  // Reports of one study, or matching ?study= / ?accession= / ?patient=, within the caller's scope.
  HttpResponse Reports(const std::string& study_uid, const std::string& query, const Identity& who);
  HttpResponse ReportFile(const std::string& sop, const Identity& who);
  HttpResponse Deliveries(const std::string& query, const Identity& who);

  const Config& config_;
  Index& index_;
  Worklist& worklist_;
  const ObjectStore& store_;
  const ListenerStats* dicom_stats_;
  ReportDesk* desk_;
  DeliveryOutbox* outbox_;
  CertificateExpiry* certificates_;
  std::atomic<uint64_t> requests_{0}, refused_{0};
};

}  // namespace teleread
