#pragma once
// DICOM TLS with DCMTK's dcmtls (PS3.15 Annex B, the BCP 195 profiles): the listener's server
// context, one client context per delivery target that wants TLS, and the expiry watch over the
// certificates in use. DCMTK does not check a server's name or address against its certificate;
// the client contexts made here do (OpenSSL's host and IP checks, set per target).
//
// Thread-safety: DicomTls is built once at start-up, then only read.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "server/pki/certificate_expiry.h"
#include "server/reading/caller_policy.h"

class DcmTransportLayer;
class DcmTLSTransportLayer;
struct ssl_ctx_st;
struct ssl_st;

namespace teleread {

// Loads a PEM certificate chain into `ctx`, refusing keys and signatures weaker than BCP 195
// asks. In place of DCMTK 3.6.7's setCertificateFile, which leaks the certificate's public key.
Status UseCertificateChain(ssl_ctx_st* ctx, const std::filesystem::path& file);

// What the peer's certificate of a finished handshake says; empty when it sent none.
TlsPeer DescribeTlsPeer(ssl_st* ssl);

class DicomTls {
 public:
  // Loads the centre's certificate, key and CA, and a client context for each delivery target
  // and workstation with tls = true. InvalidArgument names the file or target that failed.
  static Result<std::unique_ptr<DicomTls>> Create(const Config& config);
  ~DicomTls();
  DicomTls(const DicomTls&) = delete;
  DicomTls& operator=(const DicomTls&) = delete;

  // Verifies a client certificate when one is sent; whether one is required is per member.
  ssl_ctx_st* server_context() const;
  // The transport layer for associations to `target`; nullptr when it is plain TCP.
  DcmTransportLayer* ClientLayer(const DeliveryTarget& target) const;
  // The contexts that check peers against [dicom_tls] crl (empty without one).
  const std::vector<ssl_ctx_st*>& revocation_checked() const { return revocation_checked_; }

 private:
  DicomTls();
  std::unique_ptr<DcmTLSTransportLayer> server_;
  std::map<std::string, std::unique_ptr<DcmTLSTransportLayer>> clients_;  // by TargetKey
  std::vector<ssl_ctx_st*> revocation_checked_;
};

}  // namespace teleread
