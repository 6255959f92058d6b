#pragma once
// OpenSSL helpers shared by pki.cc (the CA and its certificates) and crl.cc (revocation lists
// and certificate descriptions). Private to server/pki/.
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"

namespace teleread::pki_detail {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using NamePtr = std::unique_ptr<X509_NAME, Deleter<X509_NAME, X509_NAME_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES, GENERAL_NAMES_free>>;
using GeneralNamePtr = std::unique_ptr<GENERAL_NAME, Deleter<GENERAL_NAME, GENERAL_NAME_free>>;
using OctetPtr = std::unique_ptr<ASN1_OCTET_STRING, Deleter<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>>;
using Ia5Ptr = std::unique_ptr<ASN1_IA5STRING, Deleter<ASN1_IA5STRING, ASN1_IA5STRING_free>>;
struct BioFree {
  void operator()(BIO* b) const { BIO_free_all(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

inline constexpr int kCaValidDays = 3653;  // ten years, leap days included

Status OpenSslError(const std::string& what);
// Seconds since the epoch; nullopt for a missing or unreadable time.
std::optional<int64_t> EpochSeconds(const ASN1_TIME* time);
// A pem_password_cb that refuses: an encrypted CA key must not make OpenSSL prompt.
int NoPassphrase(char*, int, int, void*);
Result<std::string> BioContents(BIO* bio);
Status SyncDirectory(const std::filesystem::path& dir);
// Creates `path` with O_EXCL and writes `bytes` durably; a partly written file is removed.
Status WriteNewFile(const std::filesystem::path& path, const std::string& bytes, mode_t mode);
// The common name becomes a file name in the CA directory, so it must be one plain name.
Status CheckCommonName(const std::string& cn);
Result<BioPtr> OpenForReading(const std::filesystem::path& path);
Result<X509Ptr> ReadPemCertificate(const std::filesystem::path& path);
Result<PkeyPtr> ReadPemKey(const std::filesystem::path& path);
std::string EntryText(const X509_NAME* name, int nid);

}  // namespace teleread::pki_detail
