#pragma once
// Refusals of callers the centre does not know are audited, but one caller retrying in a loop
// must not fill the trail (nor the disk). Per key (a certificate subject, an address), the first
// refusal of a window is written at once; the rest of the window are counted and written as one
// entry with their count by the first refusal after it.
//
// Thread-safety: any thread.
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "server/store/audit_log.h"

namespace teleread {

class RefusalAudit {
 public:
  using Writer = std::function<Status(const AuditEntry&)>;
  RefusalAudit(Writer write, Clock clock, int64_t window_ms = 60'000, size_t max_keys = 4096)
      : write_(std::move(write)), clock_(std::move(clock)), window_ms_(window_ms), max_keys_(max_keys) {}

  // `key` refused for `detail`; written now or counted (see above).
  Status Refused(const std::string& key, const std::string& detail);

 private:
  struct Window {
    int64_t start_ms = 0;
    int64_t suppressed = 0;  // refusals counted, not yet written
  };
  Writer write_;
  Clock clock_;
  const int64_t window_ms_;
  const size_t max_keys_;
  std::mutex mu_;
  std::map<std::string, Window> windows_;  // guarded by mu_
};

}  // namespace teleread
