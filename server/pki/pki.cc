#include "server/pki/pki.h"

#include "server/pki/openssl_util.h"

#include <fcntl.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <thread>

namespace teleread {
namespace fs = std::filesystem;

std::string WithOpenSslErrors(const std::string& what) {
  std::string msg = what;
  char buf[256];
  while (unsigned long err = ERR_get_error()) {
    ERR_error_string_n(err, buf, sizeof(buf));
    msg += msg == what ? ": " : "; ";
    msg += buf;
  }
  return msg;
}

namespace pki_detail {

// Backdating notBefore: a peer whose clock is a few minutes behind still accepts a fresh cert.
constexpr long kClockSkewSeconds = 5 * 60;
constexpr int kMaxValidDays = 100 * 365;

Status OpenSslError(const std::string& what) { return Status::IOError(WithOpenSslErrors(what)); }

// Seconds since the epoch; nullopt for a missing or unreadable time.
std::optional<int64_t> EpochSeconds(const ASN1_TIME* time) {
  struct tm t {};
  if (!time || ASN1_TIME_to_tm(time, &t) != 1) return std::nullopt;
  return static_cast<int64_t>(::timegm(&t));
}

// Without this an encrypted ca.key would make OpenSSL prompt on the terminal.
int NoPassphrase(char*, int, int, void*) { return -1; }

Result<std::string> BioContents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  if (len < 0) return OpenSslError("reading PEM buffer");
  return std::string(data, static_cast<size_t>(len));
}

Status SyncDirectory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + dir.string());
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno(err, "fsync " + dir.string());
  return Status::Ok();
}

// Creates `path` with O_EXCL (so nothing is ever replaced, and a key file has its final mode
// from the first byte on) and writes `bytes` durably. A partly written file is removed.
Status WriteNewFile(const fs::path& path, const char* bytes, size_t size, mode_t mode) {
  int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) return Status::InvalidArgument(path.string() + " already exists; refusing to overwrite it");
    return Status::FromErrno(errno, "create " + path.string());
  }
  size_t done = 0;
  int err = 0;
  while (done < size) {
    ssize_t n = ::write(fd, bytes + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(path.c_str());
    return Status::FromErrno(err, "write " + path.string());
  }
  return Status::Ok();
}

Status WriteNewFile(const fs::path& path, const std::string& bytes, mode_t mode) {
  return WriteNewFile(path, bytes.data(), bytes.size(), mode);
}

// Writes the key as PKCS#8 PEM. The PEM text passes through a secure-memory BIO, which wipes
// it when freed.
Status WritePrivateKey(const fs::path& path, EVP_PKEY* key, const std::string& passphrase) {
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio) return OpenSslError("BIO_new");
  const EVP_CIPHER* cipher = passphrase.empty() ? nullptr : EVP_aes_256_cbc();
  // kstr is not modified; the API predates const.
  char* kstr = passphrase.empty() ? nullptr : const_cast<char*>(passphrase.c_str());
  if (PEM_write_bio_PKCS8PrivateKey(bio.get(), key, cipher, kstr, static_cast<int>(passphrase.size()), nullptr,
                                    nullptr) != 1) {
    return OpenSslError("encoding private key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0) return OpenSslError("encoding private key");
  return WriteNewFile(path, data, static_cast<size_t>(len), 0600);
}

Status WriteCertificate(const fs::path& path, X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return OpenSslError("encoding certificate");
  Result<std::string> pem = BioContents(bio.get());
  if (!pem.ok()) return pem.status();
  return WriteNewFile(path, pem.value(), 0644);
}

// Radiologists and admins sign reports, and PS3.15's signature profiles for SR (C.5, C.6) are
// RSA-only; everything else uses P-256.
Result<PkeyPtr> GenerateKey(bool rsa) {
  PkeyPtr key(rsa ? EVP_RSA_gen(3072) : EVP_EC_gen("P-256"));
  if (!key) return OpenSslError(rsa ? "generating RSA-3072 key" : "generating P-256 key");
  return key;
}

// A positive serial of 16 random bytes (the top bit cleared so that DER needs no sign byte).
Status SetRandomSerial(X509* cert) {
  unsigned char bytes[16];
  BnPtr bn;
  do {
    if (RAND_bytes(bytes, sizeof(bytes)) != 1) return OpenSslError("RAND_bytes");
    bytes[0] &= 0x7f;
    bn.reset(BN_bin2bn(bytes, sizeof(bytes), nullptr));
    if (!bn) return OpenSslError("BN_bin2bn");
  } while (BN_is_zero(bn.get()));
  if (BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) return OpenSslError("setting serial");
  return Status::Ok();
}

// Entries in DER order, least specific first (RFC 2253 printing reverses them).
Result<NamePtr> MakeName(const std::vector<std::pair<const char*, std::string>>& entries) {
  NamePtr name(X509_NAME_new());
  if (!name) return OpenSslError("X509_NAME_new");
  for (const auto& [field, value] : entries) {
    const auto* bytes = reinterpret_cast<const unsigned char*>(value.data());
    // OpenSSL enforces X.520's bounds here (CN and O at most 64 characters).
    if (X509_NAME_add_entry_by_txt(name.get(), field, MBSTRING_UTF8, bytes, static_cast<int>(value.size()), -1, 0) !=
        1) {
      return Status::InvalidArgument(WithOpenSslErrors(std::string("subject ") + field + "=\"" + value + "\""));
    }
  }
  return name;
}

Status AddExtension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  ExtPtr ext(X509V3_EXT_nconf_nid(nullptr, ctx, nid, value));
  if (!ext) return OpenSslError(std::string("extension ") + OBJ_nid2sn(nid) + "=" + value);
  if (X509_add_ext(cert, ext.get(), -1) != 1) return OpenSslError(std::string("adding ") + OBJ_nid2sn(nid));
  return Status::Ok();
}

// Built as GENERAL_NAMEs rather than as "DNS:a,IP:b" text so that nothing in a name can be
// read as another entry.
Status AddSubjectAltName(X509* cert, const IssueRequest& request) {
  if (request.dns_names.empty() && request.ip_addresses.empty()) return Status::Ok();
  GeneralNamesPtr names(GENERAL_NAMES_new());
  if (!names) return OpenSslError("GENERAL_NAMES_new");
  for (const std::string& dns : request.dns_names) {
    if (dns.empty()) return Status::InvalidArgument("empty DNS name");
    for (unsigned char c : dns) {
      if (c <= 0x20 || c >= 0x7f || c == ',') return Status::InvalidArgument("not a DNS name: \"" + dns + "\"");
    }
    Ia5Ptr ia5(ASN1_IA5STRING_new());
    GeneralNamePtr gen(GENERAL_NAME_new());
    if (!ia5 || !gen || ASN1_STRING_set(ia5.get(), dns.data(), static_cast<int>(dns.size())) != 1) {
      return OpenSslError("DNS name");
    }
    GENERAL_NAME_set0_value(gen.get(), GEN_DNS, ia5.release());
    if (sk_GENERAL_NAME_push(names.get(), gen.get()) == 0) return OpenSslError("DNS name");
    gen.release();
  }
  for (const std::string& ip : request.ip_addresses) {
    OctetPtr octets(a2i_IPADDRESS(ip.c_str()));
    if (!octets) {
      ERR_clear_error();
      return Status::InvalidArgument("not an IP address: \"" + ip + "\"");
    }
    GeneralNamePtr gen(GENERAL_NAME_new());
    if (!gen) return OpenSslError("GENERAL_NAME_new");
    GENERAL_NAME_set0_value(gen.get(), GEN_IPADD, octets.release());
    if (sk_GENERAL_NAME_push(names.get(), gen.get()) == 0) return OpenSslError("IP address");
    gen.release();
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return OpenSslError("adding subjectAltName");
  }
  return Status::Ok();
}

Status SetValidity(X509* cert, int offset_days, int valid_days) {
  if (X509_time_adj_ex(X509_getm_notBefore(cert), offset_days, -kClockSkewSeconds, nullptr) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert), offset_days + valid_days, 0, nullptr) == nullptr) {
    return OpenSslError("setting validity");
  }
  return Status::Ok();
}

// The common name becomes a file name in the CA directory, so it must be one plain name.
Status CheckCommonName(const std::string& cn) {
  if (cn.empty()) return Status::InvalidArgument("empty common name");
  if (cn[0] == '.' || cn[0] == '-') {
    return Status::InvalidArgument("common name may not start with '.' or '-': \"" + cn + "\"");
  }
  for (unsigned char c : cn) {
    if (c < 0x20 || c == 0x7f || c == '/' || c == '\\') {
      return Status::InvalidArgument("common name must be usable as a file name: \"" + cn + "\"");
    }
  }
  if (cn == "ca") return Status::InvalidArgument("common name \"ca\" is reserved for the CA's own files");
  return Status::Ok();
}

const char* OrganizationalUnit(CertKind kind) {
  switch (kind) {
    case CertKind::kServer:
      return "server";
    case CertKind::kRadiologist:
      return "radiologist";
    case CertKind::kAdmin:
      return "admin";
    case CertKind::kMember:
      return "member";
    case CertKind::kWorkstation:
      return "workstation";
  }
  return "";
}

struct Usages {
  const char* key_usage;
  const char* extended_key_usage;
};

Usages UsagesFor(CertKind kind) {
  switch (kind) {
    // keyEncipherment is for RSA key transport; an EC key agrees on keys instead.
    // clientAuth too: the centre is the TLS client when it delivers reports over DICOM TLS.
    case CertKind::kServer:
      return {"critical,digitalSignature,keyAgreement", "serverAuth,clientAuth"};
    // nonRepudiation: radiologists (and admins) also sign DICOM reports with these keys.
    case CertKind::kRadiologist:
    case CertKind::kAdmin:
      return {"critical,digitalSignature,nonRepudiation", "clientAuth"};
    // Member sites both call the centre and are called by it (C-MOVE destinations).
    case CertKind::kMember:
    case CertKind::kWorkstation:
      return {"critical,digitalSignature", "clientAuth,serverAuth"};
  }
  return {"critical,digitalSignature", "clientAuth"};
}

Result<BioPtr> OpenForReading(const fs::path& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (bio) return bio;
  int err = errno;
  ERR_clear_error();
  if (err == ENOENT) return Status::NotFound(path.string() + " does not exist");
  return Status::FromErrno(err, "open " + path.string());
}

Result<X509Ptr> ReadPemCertificate(const fs::path& path) {
  Result<BioPtr> opened = OpenForReading(path);
  if (!opened.ok()) return opened.status();
  BioPtr bio = std::move(opened.value());
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
  if (!cert) return Status::InvalidArgument(WithOpenSslErrors(path.string() + " holds no PEM certificate"));
  return cert;
}

Result<PkeyPtr> ReadPemKey(const fs::path& path) {
  Result<BioPtr> opened = OpenForReading(path);
  if (!opened.ok()) return opened.status();
  BioPtr bio = std::move(opened.value());
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  if (!key) {
    return Status::InvalidArgument(WithOpenSslErrors(path.string() + " holds no unencrypted PEM private key"));
  }
  return key;
}

std::string EntryText(const X509_NAME* name, int nid) {
  int index = X509_NAME_get_index_by_NID(name, nid, -1);
  if (index < 0) return "";
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) return "";
  std::string text(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  return text;
}

}  // namespace pki_detail

using namespace pki_detail;

Status InitCertificateAuthority(const fs::path& dir, const std::string& organization) {
  ERR_clear_error();
  if (organization.empty()) return Status::InvalidArgument("empty organization");
  const fs::path key_path = dir / "ca.key";
  const fs::path cert_path = dir / "ca.pem";

  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) return Status::IOError("create " + dir.string() + ": " + ec.message());
    // The directory will hold the CA key; nobody else needs to list it.
    fs::permissions(dir, fs::perms::owner_all, ec);
  }
  // Checked up front for a clear message and so that neither file is written when either
  // exists; WriteNewFile's O_EXCL still guards against a concurrent init.
  for (const fs::path& p : {key_path, cert_path}) {
    if (fs::symlink_status(p, ec).type() != fs::file_type::not_found) {
      return Status::InvalidArgument(p.string() + " already exists; refusing to overwrite the CA");
    }
  }

  Result<PkeyPtr> key = GenerateKey(false);
  if (!key.ok()) return key.status();
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslError("X509_new");
  Result<NamePtr> name = MakeName({{"O", organization}, {"CN", organization + " CA"}});
  if (!name.ok()) return name.status();
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 || X509_set_subject_name(cert.get(), name->get()) != 1 ||
      X509_set_issuer_name(cert.get(), name->get()) != 1 || X509_set_pubkey(cert.get(), key->get()) != 1) {
    return OpenSslError("building CA certificate");
  }
  if (Status s = SetRandomSerial(cert.get()); !s.ok()) return s;
  if (Status s = SetValidity(cert.get(), 0, kCaValidDays); !s.ok()) return s;

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  X509V3_set_issuer_pkey(&ctx, key->get());
  // pathlen:0 because this CA signs only end-entity certificates, never another CA.
  if (Status s = AddExtension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"); !s.ok()) {
    return s;
  }
  if (Status s = AddExtension(cert.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign"); !s.ok()) return s;
  if (Status s = AddExtension(cert.get(), &ctx, NID_subject_key_identifier, "hash"); !s.ok()) return s;
  if (Status s = AddExtension(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always"); !s.ok()) return s;
  if (X509_sign(cert.get(), key->get(), EVP_sha256()) <= 0) return OpenSslError("signing CA certificate");

  // The key first: if that fails nothing is left behind, and a CA certificate never exists
  // without its key.
  if (Status s = WritePrivateKey(key_path, key->get(), ""); !s.ok()) return s;
  if (Status s = WriteCertificate(cert_path, cert.get()); !s.ok()) {
    ::unlink(key_path.c_str());
    return s;
  }
  return SyncDirectory(dir);
}

Result<IssuedFiles> IssueCertificate(const fs::path& ca_dir, const IssueRequest& request,
                                     const std::string& passphrase) {
  ERR_clear_error();
  if (Status s = CheckCommonName(request.common_name); !s.ok()) return s;
  if (request.organization.empty()) return Status::InvalidArgument("empty organization");
  if (request.valid_days < 1 || request.valid_days > kMaxValidDays) {
    return Status::InvalidArgument("valid_days must be between 1 and " + std::to_string(kMaxValidDays));
  }
  if (request.not_before_offset_days < -kMaxValidDays || request.not_before_offset_days > kMaxValidDays) {
    return Status::InvalidArgument("not_before_offset_days out of range");
  }
  IssuedFiles files{ca_dir / (request.common_name + ".pem"), ca_dir / (request.common_name + ".key")};
  std::error_code ec;
  for (const fs::path& p : {files.certificate, files.key}) {
    if (fs::symlink_status(p, ec).type() != fs::file_type::not_found) {
      return Status::InvalidArgument(p.string() + " already exists; refusing to overwrite it");
    }
  }

  Result<X509Ptr> ca = ReadPemCertificate(ca_dir / "ca.pem");
  if (!ca.ok()) return ca.status();
  Result<PkeyPtr> ca_key = ReadPemKey(ca_dir / "ca.key");
  if (!ca_key.ok()) return ca_key.status();
  if (X509_check_ca(ca->get()) == 0) return Status::InvalidArgument((ca_dir / "ca.pem").string() + " is not a CA");
  if (X509_check_private_key(ca->get(), ca_key->get()) != 1) {
    return Status::InvalidArgument(WithOpenSslErrors("ca.key does not belong to ca.pem in " + ca_dir.string()));
  }

  Result<PkeyPtr> key =
      GenerateKey(request.rsa || request.kind == CertKind::kRadiologist || request.kind == CertKind::kAdmin);
  if (!key.ok()) return key.status();
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslError("X509_new");
  Result<NamePtr> name =
      MakeName({{"O", request.organization}, {"OU", OrganizationalUnit(request.kind)}, {"CN", request.common_name}});
  if (!name.ok()) return name.status();
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 || X509_set_subject_name(cert.get(), name->get()) != 1 ||
      X509_set_issuer_name(cert.get(), X509_get_subject_name(ca->get())) != 1 ||
      X509_set_pubkey(cert.get(), key->get()) != 1) {
    return OpenSslError("building certificate");
  }
  if (Status s = SetRandomSerial(cert.get()); !s.ok()) return s;
  if (Status s = SetValidity(cert.get(), request.not_before_offset_days, request.valid_days); !s.ok()) return s;
  // A certificate that outlives its CA would stop verifying early without saying why.
  if (ASN1_TIME_compare(X509_get0_notAfter(cert.get()), X509_get0_notAfter(ca->get())) > 0) {
    return Status::InvalidArgument("the certificate would expire after the CA in " + ca_dir.string() +
                                   "; ask for fewer valid_days");
  }

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, ca->get(), cert.get(), nullptr, nullptr, 0);
  X509V3_set_issuer_pkey(&ctx, ca_key->get());
  // An RSA server key also transports the session key (TLS_RSA_* suites): keyEncipherment.
  const Usages usages = request.rsa && request.kind == CertKind::kServer
                            ? Usages{"critical,digitalSignature,keyEncipherment", "serverAuth,clientAuth"}
                            : UsagesFor(request.kind);
  if (Status s = AddExtension(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE"); !s.ok()) return s;
  if (Status s = AddExtension(cert.get(), &ctx, NID_key_usage, usages.key_usage); !s.ok()) return s;
  if (Status s = AddExtension(cert.get(), &ctx, NID_ext_key_usage, usages.extended_key_usage); !s.ok()) return s;
  if (Status s = AddExtension(cert.get(), &ctx, NID_subject_key_identifier, "hash"); !s.ok()) return s;
  if (Status s = AddExtension(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always"); !s.ok()) return s;
  if (Status s = AddSubjectAltName(cert.get(), request); !s.ok()) return s;
  if (X509_sign(cert.get(), ca_key->get(), EVP_sha256()) <= 0) return OpenSslError("signing certificate");

  if (Status s = WritePrivateKey(files.key, key->get(), passphrase); !s.ok()) return s;
  if (Status s = WriteCertificate(files.certificate, cert.get()); !s.ok()) {
    ::unlink(files.key.c_str());
    return s;
  }
  if (Status s = SyncDirectory(ca_dir); !s.ok()) return s;
  return files;
}

}  // namespace teleread
