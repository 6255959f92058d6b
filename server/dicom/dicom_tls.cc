#include "server/dicom/dicom_tls.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmtls/tlslayer.h"

#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <sstream>

#include "common/log.h"
#include "server/pki/pki.h"

namespace teleread {
namespace {

// The centre CA's CRL applies where that CA is the one trusted, however its path is written.
bool IsCentreCa(const std::filesystem::path& ca, const DicomTlsConfig& c) {
  std::error_code ec;
  return ca == c.ca || std::filesystem::equivalent(ca, c.ca, ec);
}

std::string TargetKey(const DeliveryTarget& t) { return t.ae_title + "@" + t.host + ":" + std::to_string(t.port); }

DcmTLSSecurityProfile Profile(const std::string& name) {
  if (name == "bcp195") return TSP_Profile_BCP195;
  if (name == "bcp195-ex") return TSP_Profile_BCP195_Extended;
  return TSP_Profile_BCP195_ND;
}

// The common set-up of both roles; `what` names the context in errors.
Status Configure(DcmTLSTransportLayer& layer, const DicomTlsConfig& c, const std::filesystem::path& ca,
                 const std::string& what) {
  if (!layer) return Status::IOError(what + ": OpenSSL context could not be created");
  auto fail = [&](const std::string& step, const OFCondition& cond) {
    return Status::InvalidArgument(what + ": " + step + ": " + cond.text());
  };
  if (OFCondition cond = layer.setTLSProfile(Profile(c.profile)); cond.bad()) return fail("profile " + c.profile, cond);
  if (OFCondition cond = layer.activateCipherSuites(); cond.bad()) return fail("cipher suites", cond);
  layer.setPrivateKeyPasswd("");  // never prompt on a console; encrypted keys are refused
  if (OFCondition cond = layer.setPrivateKeyFile(c.key.c_str(), DCF_Filetype_PEM); cond.bad()) {
    return fail("key " + c.key.string(), cond);
  }
  if (Status s = UseCertificateChain(layer.getNativeHandle(), c.certificate); !s.ok()) {
    return Status::InvalidArgument(what + ": " + s.message());
  }
  if (!layer.checkPrivateKeyMatchesCertificate()) {
    return Status::InvalidArgument(what + ": " + c.key.string() + " does not match " + c.certificate.string());
  }
  if (OFCondition cond = layer.addTrustedCertificateFile(ca.c_str(), DCF_Filetype_PEM); cond.bad()) {
    return fail("CA " + ca.string(), cond);
  }
  if (!c.crl.empty() && IsCentreCa(ca, c)) {
    if (Result<int64_t> r = AddRevocationList(layer.getNativeHandle(), c.crl, c.ca); !r.ok()) {
      return Status::InvalidArgument(what + ": " + r.status().message());
    }
  }
  return Status::Ok();
}

// DCMTK reports a refused server certificate as "certificate verify failed"; say which and why.
int LogRefusedPeer(int ok, X509_STORE_CTX* store) {
  if (!ok) {
    const X509* cert = X509_STORE_CTX_get_current_cert(store);
    spdlog::warn("DICOM TLS: the peer's certificate '{}' is refused: {}",
                 cert ? DescribeCertificate(cert).subject : std::string("?"),
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(store)));
  }
  return ok;
}

// PS3.15's retired AES profile beside the BCP 195 one: the RSA certificate in the context's RSA
// slot (the EC one stays for everyone else) and TLS_RSA_WITH_AES_128_CBC_SHA last in the list,
// so that a client offering anything better gets it. Which member may use it is CallerPolicy's.
Status EnableRetiredAesProfile(SSL_CTX* ctx, const DicomTlsConfig& c) {
  const std::string what = "[dicom_tls] legacy_certificate " + c.legacy_certificate.string();
  if (SSL_CTX_use_certificate_chain_file(ctx, c.legacy_certificate.c_str()) != 1) {
    return Status::InvalidArgument(WithOpenSslErrors(what));
  }
  const X509* cert = SSL_CTX_get0_certificate(ctx);
  if (!cert || EVP_PKEY_get_base_id(X509_get0_pubkey(cert)) != EVP_PKEY_RSA) {
    return Status::InvalidArgument(what + ": not an RSA certificate (pki issue DIR --kind server --rsa)");
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, c.legacy_key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return Status::InvalidArgument(WithOpenSslErrors("[dicom_tls] legacy_key " + c.legacy_key.string()));
  }
  std::string list;
  STACK_OF(SSL_CIPHER)* ciphers = SSL_CTX_get_ciphers(ctx);
  for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i) {
    const SSL_CIPHER* cipher = sk_SSL_CIPHER_value(ciphers, i);
    const std::string name = SSL_CIPHER_get_name(cipher);
    if (name.rfind("TLS_", 0) == 0) continue;  // a TLS 1.3 suite: those are set apart (ciphersuites)
    list += (list.empty() ? "" : ":") + name;
  }
  list += std::string(list.empty() ? "" : ":") + "AES128-SHA";
  if (SSL_CTX_set_cipher_list(ctx, list.c_str()) != 1) {
    return Status::InvalidArgument(WithOpenSslErrors("enabling TLS_RSA_WITH_AES_128_CBC_SHA"));
  }
  spdlog::warn(
      "DICOM TLS: the retired AES profile (TLS_RSA_WITH_AES_128_CBC_SHA, no forward secrecy) is WEAK and "
      "enabled for the members with legacy_tls");
  return Status::Ok();
}

}  // namespace

Status UseCertificateChain(ssl_ctx_st* ctx, const std::filesystem::path& file) {
  const std::string what = "certificate " + file.string();
  if (SSL_CTX_use_certificate_chain_file(ctx, file.c_str()) != 1) {
    return Status::InvalidArgument(WithOpenSslErrors(what));
  }
  // BCP 195 (RFC 9325): RSA keys of 2048 bits or more, EC keys of 256, no DSA (it rules out
  // TLS 1.3), and a certificate signed with SHA-256 or better.
  const X509* cert = SSL_CTX_get0_certificate(ctx);
  const EVP_PKEY* key = cert ? X509_get0_pubkey(cert) : nullptr;
  if (!key) return Status::InvalidArgument(what + ": no public key");
  const int bits = EVP_PKEY_get_bits(key);
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
      if (bits < 2048)
        return Status::InvalidArgument(what + ": RSA key of " + std::to_string(bits) + " bits, below 2048");
      break;
    case EVP_PKEY_EC:
      if (bits < 256) return Status::InvalidArgument(what + ": EC key of " + std::to_string(bits) + " bits, below 256");
      break;
    case EVP_PKEY_DSA:
      return Status::InvalidArgument(what + ": DSA keys are refused (no TLS 1.3)");
    default:
      break;
  }
  int digest = NID_undef;
  if (X509_get_signature_info(const_cast<X509*>(cert), &digest, nullptr, nullptr, nullptr) == 1) {
    if (digest == NID_md2 || digest == NID_md4 || digest == NID_md5 || digest == NID_sha1) {
      return Status::InvalidArgument(what + ": signed with " + OBJ_nid2sn(digest) + ", weaker than SHA-256");
    }
  }
  return Status::Ok();
}

TlsPeer DescribeTlsPeer(ssl_st* ssl) {
  TlsPeer peer;
  peer.tls = true;
  peer.protocol = SSL_get_version(ssl);
  peer.cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return peer;
  // The handshake fails on a certificate that does not verify, so one present here verified.
  peer.has_certificate = SSL_get_verify_result(ssl) == X509_V_OK;
  CertificateInfo info = DescribeCertificate(cert);
  peer.subject = info.subject;
  peer.common_name = info.common_name;
  peer.organizational_unit = info.organizational_unit;
  peer.not_after = info.not_after;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_IPADD) continue;
    const ASN1_OCTET_STRING* ip = name->d.iPAddress;
    char text[INET6_ADDRSTRLEN] = {};
    const int family = ip->length == 4 ? AF_INET : ip->length == 16 ? AF_INET6 : 0;
    if (family && inet_ntop(family, ip->data, text, sizeof text)) peer.ip_addresses.emplace_back(text);
  }
  GENERAL_NAMES_free(names);
  X509_free(cert);
  return peer;
}

DicomTls::DicomTls() = default;
DicomTls::~DicomTls() = default;

Result<std::unique_ptr<DicomTls>> DicomTls::Create(const Config& config) {
  const DicomTlsConfig& c = config.dicom_tls;
  std::unique_ptr<DicomTls> tls(new DicomTls());
  tls->server_ = std::make_unique<DcmTLSTransportLayer>(NET_ACCEPTOR, nullptr, OFFalse);
  if (Status s = Configure(*tls->server_, c, c.ca, "[dicom_tls]"); !s.ok()) return s;
  tls->server_->setCertificateVerification(DCV_checkCertificate);
  if (std::any_of(config.members.begin(), config.members.end(), [](const Member& m) { return m.legacy_tls; })) {
    if (Status s = EnableRetiredAesProfile(tls->server_->getNativeHandle(), c); !s.ok()) return s;
  }
  // Without a session id context OpenSSL aborts every resumption once client certificates are
  // verified; a resumed session is checked against the current CRL in AcceptTls.
  static const unsigned char kSessionContext[] = "teleread-dicom-tls";
  SSL_CTX_set_session_id_context(tls->server_->getNativeHandle(), kSessionContext, sizeof kSessionContext - 1);
  SSL_CTX_set_session_cache_mode(tls->server_->getNativeHandle(), SSL_SESS_CACHE_SERVER);
  if (!c.crl.empty()) tls->revocation_checked_.push_back(tls->server_->getNativeHandle());

  std::vector<DeliveryTarget> targets = config.workstations;
  for (const Member& m : config.members) {
    if (m.delivery) targets.push_back(*m.delivery);
  }
  for (const DeliveryTarget& t : targets) {
    if (!t.tls || tls->clients_.count(TargetKey(t))) continue;
    auto layer = std::make_unique<DcmTLSTransportLayer>(NET_REQUESTOR, nullptr, OFFalse);
    const std::string what = "delivery to " + t.ae_title;
    const std::filesystem::path& ca = t.tls_ca.empty() ? c.ca : t.tls_ca;
    if (Status s = Configure(*layer, c, ca, what); !s.ok()) return s;
    if (!c.crl.empty()) {
      if (IsCentreCa(ca, c)) {
        tls->revocation_checked_.push_back(layer->getNativeHandle());
      } else {
        spdlog::info("{}: its certificate is checked against {}, so [dicom_tls] crl does not apply", what,
                     t.tls_ca.string());
      }
    }
    layer->setCertificateVerification(DCV_requireCertificate);
    SSL_CTX_set_verify(layer->getNativeHandle(), SSL_CTX_get_verify_mode(layer->getNativeHandle()), LogRefusedPeer);
    // The peer's certificate must name the configured host: an address or a DNS name.
    X509_VERIFY_PARAM* param = SSL_CTX_get0_param(layer->getNativeHandle());
    unsigned char buf[16];
    const bool is_ip = inet_pton(AF_INET, t.host.c_str(), buf) == 1 || inet_pton(AF_INET6, t.host.c_str(), buf) == 1;
    const int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, t.host.c_str())
                         : X509_VERIFY_PARAM_set1_host(param, t.host.c_str(), t.host.size());
    if (ok != 1) return Status::InvalidArgument(what + ": cannot check the peer's name against " + t.host);
    tls->clients_.emplace(TargetKey(t), std::move(layer));
  }
  return tls;
}

ssl_ctx_st* DicomTls::server_context() const { return server_->getNativeHandle(); }

DcmTransportLayer* DicomTls::ClientLayer(const DeliveryTarget& target) const {
  if (!target.tls) return nullptr;
  auto it = clients_.find(TargetKey(target));
  return it == clients_.end() ? nullptr : it->second.get();
}

}  // namespace teleread
