#include "server/pki/pki.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "server/pki/openssl_util.h"
#include "server/pki/revocation.h"

namespace teleread {
namespace fs = std::filesystem;
using namespace pki_detail;

Result<int> WriteRevocationList(const fs::path& ca_dir, const std::string& revoke, int valid_days) {
  using CrlPtr = std::unique_ptr<X509_CRL, Deleter<X509_CRL, X509_CRL_free>>;
  using RevokedPtr = std::unique_ptr<X509_REVOKED, Deleter<X509_REVOKED, X509_REVOKED_free>>;
  using TimePtr = std::unique_ptr<ASN1_TIME, Deleter<ASN1_TIME, ASN1_TIME_free>>;
  using IntegerPtr = std::unique_ptr<ASN1_INTEGER, Deleter<ASN1_INTEGER, ASN1_INTEGER_free>>;
  ERR_clear_error();
  if (valid_days < 1 || valid_days > kCaValidDays) {
    return Status::InvalidArgument("a CRL is valid for 1 to " + std::to_string(kCaValidDays) + " days");
  }
  Result<X509Ptr> ca = ReadPemCertificate(ca_dir / "ca.pem");
  if (!ca.ok()) return ca.status();
  Result<PkeyPtr> ca_key = ReadPemKey(ca_dir / "ca.key");
  if (!ca_key.ok()) return ca_key.status();
  if (X509_check_private_key(ca->get(), ca_key->get()) != 1) {
    return Status::InvalidArgument(WithOpenSslErrors("ca.key does not belong to ca.pem in " + ca_dir.string()));
  }
  const fs::path path = ca_dir / "crl.pem";
  CrlPtr previous;
  if (Result<BioPtr> in = OpenForReading(path); in.ok()) {
    previous.reset(PEM_read_bio_X509_CRL(in->get(), nullptr, NoPassphrase, nullptr));
    if (!previous) return Status::InvalidArgument(WithOpenSslErrors(path.string() + " holds no PEM CRL"));
    if (X509_CRL_verify(previous.get(), ca_key->get()) != 1) {
      return Status::InvalidArgument(WithOpenSslErrors(path.string() + " is not signed by this CA"));
    }
  } else if (in.status().code() != Status::Code::kNotFound) {
    return in.status();
  }

  CrlPtr crl(X509_CRL_new());
  if (!crl || X509_CRL_set_version(crl.get(), 1) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca->get())) != 1) {
    return OpenSslError("building the CRL");
  }
  time_t now = std::time(nullptr);
  // OpenSSL prefers a list to another of the same CA only when its thisUpdate is later, and a
  // list dated ahead is not yet valid: a second list within one second waits for the next.
  if (std::optional<int64_t> last = previous ? EpochSeconds(X509_CRL_get0_lastUpdate(previous.get())) : std::nullopt) {
    while (now <= *last && *last - now < 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      now = std::time(nullptr);
    }
  }
  TimePtr this_update(ASN1_TIME_set(nullptr, now)), next_update(X509_time_adj_ex(nullptr, valid_days, 0, &now));
  if (!this_update || !next_update || X509_CRL_set1_lastUpdate(crl.get(), this_update.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next_update.get()) != 1) {
    return OpenSslError("setting the CRL's dates");
  }
  int listed = 0;
  if (previous) {
    STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(previous.get());
    for (int i = 0; i < sk_X509_REVOKED_num(entries); ++i) {
      RevokedPtr copy(X509_REVOKED_dup(sk_X509_REVOKED_value(entries, i)));
      if (!copy || X509_CRL_add0_revoked(crl.get(), copy.get()) != 1) return OpenSslError("copying the CRL");
      copy.release();
      ++listed;
    }
  }
  if (!revoke.empty()) {
    if (Status s = CheckCommonName(revoke); !s.ok()) return s;
    Result<X509Ptr> cert = ReadPemCertificate(ca_dir / (revoke + ".pem"));
    if (!cert.ok()) return cert.status();
    if (X509_verify(cert->get(), ca_key->get()) != 1) {
      return Status::InvalidArgument(WithOpenSslErrors(revoke + ".pem was not issued by this CA"));
    }
    const ASN1_INTEGER* serial = X509_get0_serialNumber(cert->get());
    X509_REVOKED* found = nullptr;
    if (previous && X509_CRL_get0_by_serial(previous.get(), &found, serial) == 1) {
      return Status::InvalidArgument(revoke + ".pem is revoked already");
    }
    RevokedPtr entry(X509_REVOKED_new());
    if (!entry || X509_REVOKED_set_serialNumber(entry.get(), const_cast<ASN1_INTEGER*>(serial)) != 1 ||
        X509_REVOKED_set_revocationDate(entry.get(), this_update.get()) != 1 ||
        X509_CRL_add0_revoked(crl.get(), entry.get()) != 1) {
      return OpenSslError("adding the revoked certificate");
    }
    entry.release();
    ++listed;
  }
  // CRL number: one more than the previous list's.
  long number = 1;
  if (previous) {
    IntegerPtr old(static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(previous.get(), NID_crl_number, nullptr, nullptr)));
    if (old) number = ASN1_INTEGER_get(old.get()) + 1;
  }
  IntegerPtr crl_number(ASN1_INTEGER_new());
  if (!crl_number || ASN1_INTEGER_set(crl_number.get(), number) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, crl_number.get(), 0, 0) != 1 || X509_CRL_sort(crl.get()) != 1 ||
      X509_CRL_sign(crl.get(), ca_key->get(), EVP_sha256()) <= 0) {
    return OpenSslError("signing the CRL");
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_CRL(bio.get(), crl.get()) != 1) return OpenSslError("encoding the CRL");
  Result<std::string> pem = BioContents(bio.get());
  if (!pem.ok()) return pem.status();
  const fs::path temp = ca_dir / ("crl.pem.new." + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove(temp, ec);
  if (Status s = WriteNewFile(temp, pem.value(), 0644); !s.ok()) return s;
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return Status::FromErrno(err, "replace " + path.string());
  }
  if (Status s = SyncDirectory(ca_dir); !s.ok()) return s;
  return listed;
}

Result<int64_t> AddRevocationList(void* ssl_ctx, const fs::path& path, const fs::path& ca) {
  ERR_clear_error();
  std::vector<X509Ptr> authorities;
  {
    Result<BioPtr> ca_in = OpenForReading(ca);
    if (!ca_in.ok()) return ca_in.status();
    while (X509* cert = PEM_read_bio_X509(ca_in->get(), nullptr, NoPassphrase, nullptr)) authorities.emplace_back(cert);
    ERR_clear_error();
    if (authorities.empty()) return Status::InvalidArgument(ca.string() + " holds no PEM certificate");
  }
  Result<BioPtr> in = OpenForReading(path);
  if (!in.ok()) return in.status();
  X509_STORE* store = ssl_ctx ? SSL_CTX_get_cert_store(static_cast<SSL_CTX*>(ssl_ctx)) : nullptr;
  int64_t earliest = 0;
  int count = 0;
  // Once per file, when it is left: lists added before a refused one of the file stay added;
  // the CRL check flag is on by then.
  struct Bump {
    bool added = false;
    ~Bump() {
      if (added) TrustStoreChanged();
    }
  } bump;
  for (;;) {
    std::unique_ptr<X509_CRL, Deleter<X509_CRL, X509_CRL_free>> crl(
        PEM_read_bio_X509_CRL(in->get(), nullptr, NoPassphrase, nullptr));
    if (!crl) break;
    const std::optional<int64_t> next = EpochSeconds(X509_CRL_get0_nextUpdate(crl.get()));
    if (!next) return Status::InvalidArgument(path.string() + ": a CRL without a valid nextUpdate");
    const int64_t next_update = *next;
    if (next_update <= std::time(nullptr)) {
      return Status::InvalidArgument(path.string() +
                                     ": the CRL expired (nextUpdate passed); re-sign it with "
                                     "`teleread-server pki crl DIR`");
    }
    const bool signed_by_ca = std::any_of(authorities.begin(), authorities.end(), [&](const X509Ptr& a) {
      EVP_PKEY* key = X509_get0_pubkey(a.get());
      return X509_NAME_cmp(X509_get_subject_name(a.get()), X509_CRL_get_issuer(crl.get())) == 0 && key &&
             X509_CRL_verify(crl.get(), key) == 1;
    });
    ERR_clear_error();
    if (!signed_by_ca) return Status::InvalidArgument(path.string() + ": a CRL not signed by the CA of " + ca.string());
    if (earliest == 0 || next_update < earliest) earliest = next_update;
    if (store && X509_STORE_add_crl(store, crl.get()) != 1) return OpenSslError("adding " + path.string());
    bump.added |= store != nullptr;
    ++count;
  }
  ERR_clear_error();  // the end of the file reads as an error
  if (count == 0) return Status::InvalidArgument(path.string() + " holds no PEM CRL");
  // Once: handshakes on other threads read these flags while a list is re-read.
  if (store && (X509_VERIFY_PARAM_get_flags(X509_STORE_get0_param(store)) & X509_V_FLAG_CRL_CHECK) == 0 &&
      X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK) != 1) {
    return OpenSslError("enabling CRL checks");
  }
  return earliest;
}

CertificateInfo DescribeCertificate(const void* x509) {
  CertificateInfo info;
  const auto* cert = static_cast<const X509*>(x509);
  if (cert == nullptr) return info;
  // Only this function's own errors are dropped: the TLS caller may have some of its own queued.
  ERR_set_mark();
  const X509_NAME* subject = X509_get_subject_name(cert);
  if (BioPtr bio(BIO_new(BIO_s_mem())); bio && X509_NAME_print_ex(bio.get(), subject, 0, XN_FLAG_RFC2253) >= 0) {
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    if (len > 0) info.subject.assign(data, static_cast<size_t>(len));
  }
  info.common_name = EntryText(subject, NID_commonName);
  info.organizational_unit = EntryText(subject, NID_organizationalUnitName);
  info.not_after = EpochSeconds(X509_get0_notAfter(cert)).value_or(0);
  ERR_pop_to_mark();
  return info;
}

Result<CertificateInfo> ReadCertificateInfo(const fs::path& pem) {
  ERR_clear_error();
  Result<X509Ptr> cert = ReadPemCertificate(pem);
  if (!cert.ok()) return cert.status();
  return DescribeCertificate(cert->get());
}

}  // namespace teleread
