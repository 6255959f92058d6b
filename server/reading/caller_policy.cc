#include "server/reading/caller_policy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace teleread {
namespace {

// Compares addresses by value so that "::ffff:10.0.0.1" and "10.0.0.1" are the same peer.
std::string Canonical(const std::string& ip) {
  unsigned char buf[16];
  char out[INET6_ADDRSTRLEN] = {0};
  if (inet_pton(AF_INET, ip.c_str(), buf) == 1) return inet_ntop(AF_INET, buf, out, sizeof out);
  if (inet_pton(AF_INET6, ip.c_str(), buf) == 1) {
    static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(buf, kMapped, 12) == 0) return inet_ntop(AF_INET, buf + 12, out, sizeof out);
    return inet_ntop(AF_INET6, buf, out, sizeof out);
  }
  return ip;
}

}  // namespace

std::optional<Caller> CallerPolicy::Identify(const std::string& calling_ae, const std::string& peer_ip) const {
  if (config_.IsCentreAeTitle(calling_ae)) return Caller{calling_ae, "", true};
  const Member* member = config_.FindMemberByAeTitle(calling_ae);
  if (!member) return std::nullopt;
  if (!member->allowed_addresses.empty()) {
    std::string peer = Canonical(peer_ip);
    bool allowed = std::any_of(member->allowed_addresses.begin(), member->allowed_addresses.end(),
                               [&](const std::string& a) { return Canonical(a) == peer; });
    if (!allowed) return std::nullopt;
  }
  return Caller{calling_ae, member->id, false};
}

std::optional<std::string> CallerPolicy::TransportProblem(const Caller& caller, const TlsPeer& tls,
                                                          const std::string& peer_ip) const {
  const Member* member = caller.is_centre ? nullptr : config_.FindMemberByAeTitle(caller.ae_title);
  if (IsRetiredAesProfile(tls) && !(member && member->legacy_tls)) {
    return "the retired AES profile (TLS_RSA_WITH_AES_128_CBC_SHA) is only for members with legacy_tls";
  }
  if (member && member->require_tls && !tls.has_certificate) {
    return "member " + member->id + " requires TLS with its client certificate";
  }
  if (caller.is_centre && !tls.has_certificate) {
    // A centre AE title sees every member's studies, so its name alone proves nothing.
    const PlainCentreCaller* plain = config_.FindPlainCentreCaller(caller.ae_title);
    const std::string peer = Canonical(peer_ip);
    if (plain && std::any_of(plain->addresses.begin(), plain->addresses.end(),
                             [&](const std::string& a) { return Canonical(a) == peer; })) {
      return std::nullopt;
    }
    return "centre AE title " + caller.ae_title +
           " must present its workstation certificate over DICOM TLS (no plain_callers entry for " + peer_ip + ")";
  }
  if (!tls.has_certificate) return std::nullopt;
  if (member) {
    const bool names_member =
        tls.common_name == member->id ||
        std::find(member->ae_titles.begin(), member->ae_titles.end(), tls.common_name) != member->ae_titles.end();
    if (tls.organizational_unit != "member" || !names_member) {
      return "certificate '" + tls.subject + "' is not member " + member->id + "'s";
    }
  } else if (tls.organizational_unit != "workstation" || tls.common_name != caller.ae_title) {
    return "certificate '" + tls.subject + "' is not centre AE title " + caller.ae_title +
           "'s (pki issue --kind workstation --name " + caller.ae_title + ")";
  }
  if (!tls.ip_addresses.empty()) {
    const std::string peer = Canonical(peer_ip);
    if (std::none_of(tls.ip_addresses.begin(), tls.ip_addresses.end(),
                     [&](const std::string& a) { return Canonical(a) == peer; })) {
      return "certificate '" + tls.subject + "' does not list the peer address " + peer_ip;
    }
  }
  return std::nullopt;
}

}  // namespace teleread
