#pragma once
// Critical-result webhooks: one HTTPS POST of a JSON notice per attempt, presenting the centre's
// certificate ([https] certificate and key, which the centre CA issues for clientAuth too) and
// trusting the centre CA and the system's CAs for the receiver, whose certificate must name the
// URL's host. Each attempt is bounded by `timeout_seconds`.
//
// Thread-safety: Notify may be called from any thread.
#include <string>

#include "common/config.h"
#include "server/reading/critical_results.h"

namespace teleread {

class WebhookNotifier : public CriticalNotifier {
 public:
  WebhookNotifier(const Config& config, int timeout_seconds) : config_(config), timeout_seconds_(timeout_seconds) {}
  std::string Notify(const Member& member, const CriticalResult& result) override;

 private:
  const Config& config_;
  int timeout_seconds_;
};

// The JSON notice: event, report and study UIDs, accession, member, signer, opened time, and
// where to acknowledge.
std::string CriticalNotice(const Config& config, const CriticalResult& result);

}  // namespace teleread
