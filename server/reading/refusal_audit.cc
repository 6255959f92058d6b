#include "server/reading/refusal_audit.h"

namespace teleread {

Status RefusalAudit::Refused(const std::string& key, const std::string& detail) {
  const int64_t now = clock_();
  int64_t suppressed = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = windows_.find(key);
    if (it != windows_.end() && now - it->second.start_ms < window_ms_) {
      ++it->second.suppressed;
      return Status::Ok();
    }
    if (it != windows_.end()) {
      suppressed = it->second.suppressed;
      it->second = Window{now, 0};
    } else {
      // Many distinct keys (a scan): forget the quiet ones rather than grow without bound.
      if (windows_.size() >= max_keys_) {
        for (auto w = windows_.begin(); w != windows_.end();) {
          w = now - w->second.start_ms >= window_ms_ && w->second.suppressed == 0 ? windows_.erase(w) : std::next(w);
        }
      }
      if (windows_.size() >= max_keys_) windows_.erase(windows_.begin());
      windows_[key] = Window{now, 0};
    }
  }
  std::string text = detail;
  if (suppressed > 0) text += " (and " + std::to_string(suppressed) + " more refusal(s) of the same caller before)";
  return write_(AuditEntry{key, "refused", "", text});
}

}  // namespace teleread
