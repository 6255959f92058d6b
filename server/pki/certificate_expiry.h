#pragma once
// Certificates whose expiry is watched, and their Prometheus gauges.
//
// Thread-safety: internally locked; any thread.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace teleread {

// Certificates whose expiry is watched: the centre's own from start-up, peers' at each handshake.
class CertificateExpiry {
 public:
  explicit CertificateExpiry(int warning_days) : warning_seconds_(int64_t{warning_days} * 86400) {}

  // Records `name`'s expiry and warns in the log, at most once a day per name, when it is less
  // than the warning window away (or past).
  void Observe(const std::string& name, int64_t not_after, int64_t now_seconds);
  // Prometheus text: seconds left per certificate and how many are inside the warning window.
  // Warns again (once a day) about those, so a long-running server keeps saying it.
  std::string Metrics(int64_t now_seconds);

 private:
  void WarnIfDue(const std::string& name, int64_t not_after, int64_t now_seconds, int64_t& warned_day);

  const int64_t warning_seconds_;
  std::mutex mu_;
  struct Entry {
    int64_t not_after = 0;
    int64_t warned_day = -1;
  };
  std::map<std::string, Entry> entries_;  // guarded by mu_
};

}  // namespace teleread
