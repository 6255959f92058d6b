#include "server/pki/certificate_expiry.h"

#include <sstream>

#include "common/log.h"

namespace teleread {

void CertificateExpiry::WarnIfDue(const std::string& name, int64_t not_after, int64_t now, int64_t& warned_day) {
  const int64_t left = not_after - now;
  if (left >= warning_seconds_ || warned_day == now / 86400) return;
  warned_day = now / 86400;
  if (left <= 0) {
    spdlog::error("certificate {} expired {} day(s) ago", name, -left / 86400);
  } else {
    spdlog::warn("certificate {} expires in {} day(s): renew it", name, left / 86400);
  }
}

void CertificateExpiry::Observe(const std::string& name, int64_t not_after, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = entries_[name];
  if (e.not_after != not_after) e.warned_day = -1;  // a renewed certificate is news
  e.not_after = not_after;
  WarnIfDue(name, not_after, now, e.warned_day);
}

std::string CertificateExpiry::Metrics(int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  std::ostringstream out;
  out << "# HELP teleread_certificate_expiry_seconds Seconds until the certificate expires (negative: expired)\n"
      << "# TYPE teleread_certificate_expiry_seconds gauge\n";
  int soon = 0;
  for (auto& [name, e] : entries_) {
    std::string label;
    for (char ch : name) {
      if (ch == '"' || ch == '\\') label += '\\';
      label += ch;
    }
    out << "teleread_certificate_expiry_seconds{certificate=\"" << label << "\"} " << e.not_after - now << "\n";
    if (e.not_after - now < warning_seconds_) ++soon;
    WarnIfDue(name, e.not_after, now, e.warned_day);
  }
  out << "# HELP teleread_certificates_expiring Certificates that expire within the warning window\n"
      << "# TYPE teleread_certificates_expiring gauge\n"
      << "teleread_certificates_expiring " << soon << "\n";
  return out.str();
}

}  // namespace teleread
