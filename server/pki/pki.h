#pragma once
// The reading centre's own small certificate authority. Sites, radiologists and administrators
// authenticate with client certificates the centre issues itself: there is no public CA in the
// loop, and the CA key stays with the operator (`teleread-server pki init DIR`, `pki issue ...`).
// Tests and the demo use the same code to make their certificates.
//
// Keys are EC P-256 (RSA-3072 for radiologists and admins, whose keys sign DICOM reports under
// PS3.15's RSA-only SR signature profiles), signatures SHA-256, certificates X.509 v3. Nothing here ever overwrites a
// key or certificate file: every file is created with O_EXCL, private keys with mode 0600.
//
// Thread-safety: all functions may be called concurrently. Failures leave this thread's OpenSSL
// error queue empty, so that a TLS connection on the same thread does not misread it.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"

namespace teleread {

// Decides the subject's OU and the key usages; see IssueCertificate.
enum class CertKind { kServer, kRadiologist, kAdmin, kMember, kWorkstation };

struct IssueRequest {
  CertKind kind = CertKind::kMember;
  std::string common_name;                // e.g. "wang.li", "teleread-server", "ZZ_PACS"; also the file name
  std::string organization;               // e.g. "Lixian Regional Imaging Reading Centre"
  std::vector<std::string> dns_names;     // subjectAltName DNS entries (server certs; may be empty)
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries, e.g. "127.0.0.1" or "::1"
  int valid_days = 825;
  int not_before_offset_days = 0;  // negative: valid from the past (tests make expired certificates
                                   // with not_before_offset_days=-10, valid_days=5)
  bool rsa = false;                // an RSA-3072 key for a server certificate (the retired AES profile needs RSA)
};

struct IssuedFiles {
  std::filesystem::path certificate, key;
};

// Creates DIR (mode 0700) if needed, then DIR/ca.key (mode 0600, unencrypted PKCS#8) and
// DIR/ca.pem: self-signed, basicConstraints critical CA:TRUE with pathlen:0 (it signs only
// end-entity certificates), keyUsage keyCertSign+cRLSign, subject O=<organization>,
// CN="<organization> CA", valid for 10 years.
// InvalidArgument when DIR already holds ca.key or ca.pem: a CA is never overwritten.
Status InitCertificateAuthority(const std::filesystem::path& dir, const std::string& organization);

// Issues a certificate signed by DIR/ca.pem with DIR/ca.key and writes DIR/<common_name>.pem (the
// certificate alone) and DIR/<common_name>.key (PKCS#8 PEM; AES-256-CBC encrypted when passphrase
// is non-empty; mode 0600 from creation on).
//
// Subject O=<organization>, OU=<kind>, CN=<common_name>. Extensions, by kind:
//   kServer       keyUsage digitalSignature+keyAgreement, extendedKeyUsage serverAuth+clientAuth
//                 (clientAuth: the centre calls member PACS over DICOM TLS)
//   kRadiologist  keyUsage digitalSignature+nonRepudiation, extendedKeyUsage clientAuth
//                 (nonRepudiation: radiologist keys also sign DICOM reports)
//   kAdmin        same as kRadiologist
//   kMember       keyUsage digitalSignature, extendedKeyUsage clientAuth+serverAuth
//   kWorkstation  same as kMember (a centre AE title: it calls the centre and takes C-MOVEs);
//                 the common name is the workstation's AE title
// and for all: basicConstraints CA:FALSE, subject and authority key identifiers, a random
// 128-bit serial, subjectAltName when dns_names or ip_addresses are given. notBefore is set
// five minutes early so that a peer whose clock lags a little accepts a fresh certificate.
//
// NotFound when DIR has no CA; InvalidArgument for a bad request (a common name that is not a
// plain file name, an unparsable IP address, a validity ending after the CA's) and when either
// output file already exists.
Result<IssuedFiles> IssueCertificate(const std::filesystem::path& ca_dir, const IssueRequest& request,
                                     const std::string& passphrase = "");

// Writes DIR/crl.pem: a CRL (v2) signed by the CA, listing every certificate revoked so far
// (those of the previous DIR/crl.pem) and, when `revoke` is non-empty, the certificate
// DIR/<revoke>.pem as well (InvalidArgument when it is not the CA's or is revoked already).
// thisUpdate is now, nextUpdate `valid_days` later: a peer checking revocation refuses every
// certificate of the CA once the CRL has expired, so re-issue it before (`pki crl DIR`). The
// file is replaced atomically; it also carries a CRL number one above the previous one.
// Returns how many certificates the CRL lists.
Result<int> WriteRevocationList(const std::filesystem::path& ca_dir, const std::string& revoke, int valid_days = 365);

// Reads the CRLs of a PEM file (such as DIR/crl.pem), each of which must be signed by a CA
// certificate of the PEM file `ca`. With `ssl_ctx` (an SSL_CTX*) it adds them to that context's
// trust store and turns on revocation checks of peer certificates: a peer whose certificate is
// listed is refused, and so is one whose issuer has no current CRL there (fail closed). Returns
// the earliest nextUpdate, in seconds since the epoch. InvalidArgument when the file holds no
// CRL, or one has expired or is not signed by `ca`.
Result<int64_t> AddRevocationList(void* ssl_ctx, const std::filesystem::path& crl, const std::filesystem::path& ca);

// Appends OpenSSL's queued errors to `what` and empties the queue: a stale entry would make a
// later SSL_get_error on this thread report a failure that is not the TLS connection's.
std::string WithOpenSslErrors(const std::string& what);

struct CertificateInfo {
  // RFC 2253 form as OpenSSL prints it with XN_FLAG_RFC2253, most specific first, e.g.
  // "CN=wang.li,OU=radiologist,O=Lixian Regional Imaging Reading Centre". Non-ASCII characters
  // appear escaped (\E7\8E\8B); common_name and organizational_unit are plain UTF-8.
  std::string subject;
  std::string common_name;          // the first CN; empty when there is none
  std::string organizational_unit;  // the first OU; empty when there is none
  int64_t not_after = 0;            // seconds since the epoch
};

// The subject and expiry of the first certificate in a PEM file.
Result<CertificateInfo> ReadCertificateInfo(const std::filesystem::path& pem);

// Same, from an in-memory X509* (the TLS server has the peer's certificate). Empty for nullptr.
CertificateInfo DescribeCertificate(const void* x509 /* const X509* */);

}  // namespace teleread
