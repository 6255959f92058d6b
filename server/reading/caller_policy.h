#pragma once
// Who may open an association: member hospitals by calling AE title (and source address when
// configured), and the centre's own AE titles; over TLS, whether the client certificate is the
// calling member's. Plain logic over the config.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"

namespace teleread {

struct Caller {
  std::string ae_title;
  std::string member_id;  // empty for a centre AE title
  bool is_centre = false;
};

// What a TLS handshake established about the peer; all empty for plain TCP.
struct TlsPeer {
  bool tls = false;
  bool has_certificate = false;  // a client certificate, verified against the centre's CA
  std::string subject, common_name, organizational_unit;
  std::vector<std::string> ip_addresses;  // the certificate's subjectAltName IP entries
  int64_t not_after = 0;
  std::string protocol, cipher;
};

// Whether the connection runs PS3.15's retired AES profile (TLS_RSA_WITH_AES_128_CBC_SHA).
inline bool IsRetiredAesProfile(const TlsPeer& tls) { return tls.tls && tls.cipher == "AES128-SHA"; }

class CallerPolicy {
 public:
  explicit CallerPolicy(const Config& config) : config_(config) {}
  // nullopt: reject the association (calling AE title not recognised).
  std::optional<Caller> Identify(const std::string& calling_ae, const std::string& peer_ip) const;
  bool AcceptsCalledAeTitle(const std::string& called_ae) const { return called_ae == config_.centre.ae_title; }
  // Why `caller` may not associate over this transport; nullopt when it may. A member that
  // requires TLS needs a client certificate; any certificate sent must be the calling member's
  // (OU=member, CN = its id or one of its AE titles). A centre AE title needs its own
  // certificate (OU=workstation, CN = the AE title) unless centre.plain_callers allows it plain
  // from `peer_ip`. A certificate listing IP addresses must list the peer's.
  std::optional<std::string> TransportProblem(const Caller& caller, const TlsPeer& tls,
                                              const std::string& peer_ip) const;

 private:
  const Config& config_;
};

}  // namespace teleread
