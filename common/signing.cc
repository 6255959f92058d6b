#include "common/signing.h"

#include "common/dicom.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dcvrat.h"
#include "dcmtk/dcmsign/dcsignat.h"
#include "dcmtk/dcmsign/sicert.h"
#include "dcmtk/dcmsign/sicertvf.h"
#include "dcmtk/dcmsign/simdmac.h"
#include "dcmtk/dcmsign/siprivat.h"
#include "dcmtk/dcmsign/sisrvpr.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <iterator>
#include <mutex>
#include <set>
#include <vector>

namespace teleread {
namespace {

std::string Text(X509_NAME* name, int nid) {
  int i = X509_NAME_get_index_by_NID(name, nid, -1);
  if (i < 0) return "";
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
  if (n < 0) return "";
  std::string out(reinterpret_cast<char*>(utf8), n);
  OPENSSL_free(utf8);
  return out;
}

std::string Subject(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, n);
  BIO_free(bio);
  return out;
}

// A report signature is a commitment to its content, not just authentication.
bool CanCommit(X509* cert) {
  const uint32_t usage = X509_get_key_usage(cert);
  return usage == UINT32_MAX /* no keyUsage extension */ || (usage & KU_NON_REPUDIATION) != 0;
}

// Attributes a signature cannot cover: the signatures themselves and group lengths.
bool Unsignable(const DcmTagKey& tag) {
  return tag == DCM_DigitalSignaturesSequence || tag == DCM_MACParametersSequence || tag.getElement() == 0x0000;
}

// The signature covers the data set's content as DCMTK decodes it, not its bytes: a flipped VR
// code that DCMTK tolerates, or the length of a delimitation item, leaves the content (and the
// signature) intact. A report must therefore also be encoded exactly as its content re-encodes,
// so that any change to the file shows. A deflated data set is compared as inflated: the
// compressed bytes have no canonical form, what they inflate to has.
Status CheckCanonical(const std::filesystem::path& path, DicomFile& file) {
  DcmDataset& ds = file.dataset();
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Preamble, "DICM", then (0002,0000) UL: the meta group's length.
  if (bytes.size() < 144 || bytes.compare(128, 4, "DICM") != 0 ||
      bytes.compare(132, 6, std::string("\x02\x00\x00\x00UL", 6)) != 0) {
    return Status::Corruption("the file's meta header is not in the standard form");
  }
  auto u8 = [&bytes](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])); };
  size_t start = 144 + (u8(140) | u8(141) << 8 | u8(142) << 16 | u8(143) << 24);
  if (start > bytes.size()) return Status::Corruption("the file's meta header length is wrong");
  if (const std::filesystem::path inflated = file.inflated_data_set(); !inflated.empty()) {
    std::ifstream data(inflated, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(data), std::istreambuf_iterator<char>());
    if (!data.good() && !data.eof()) return Status::IOError("cannot read the inflated data set");
    start = 0;
  }
  const E_TransferSyntax xfer = ds.getOriginalXfer();
  for (E_EncodingType enc : {EET_UndefinedLength, EET_ExplicitLength}) {
    const Uint32 length = ds.calcElementLength(xfer, enc);
    if (length != bytes.size() - start) continue;
    std::vector<char> buffer(length + 1);
    DcmOutputBufferStream out(buffer.data(), buffer.size());
    ds.transferInit();
    OFCondition c = ds.write(out, xfer, enc, nullptr, EGL_noChange);
    ds.transferEnd();
    void* data = nullptr;
    offile_off_t n = 0;
    out.flushBuffer(data, n);
    if (c.good() && static_cast<size_t>(n) == length &&
        bytes.compare(start, length, static_cast<char*>(data), n) == 0) {
      return Status::Ok();
    }
  }
  return Status::Corruption("the report's encoding differs from its signed content (the file was modified)");
}

}  // namespace

void InitializeSigning() {
  static std::once_flag once;
  std::call_once(once, [] { DcmSignature::initializeLibrary(); });
}

Status SignReportFile(const std::filesystem::path& in, const std::filesystem::path& out,
                      const std::filesystem::path& certificate, const std::filesystem::path& key,
                      const std::string& passphrase, bool check_validity) {
  InitializeSigning();
  Result<std::unique_ptr<DicomFile>> opened = DicomFile::Open(in, 0, false);
  if (!opened.ok()) return Status::InvalidArgument("cannot read " + in.string() + ": " + opened.status().message());
  DcmFileFormat& file = opened.value()->format();
  SiCertificate cert;
  if (cert.loadCertificate(certificate.c_str(), X509_FILETYPE_PEM).bad()) {
    return Status::InvalidArgument("cannot read the certificate " + certificate.string());
  }
  if (check_validity && X509_cmp_current_time(X509_get0_notAfter(cert.getRawCertificate())) <= 0) {
    return Status::InvalidArgument("the certificate " + certificate.string() +
                                   " has expired: ask the centre for a new one");
  }
  if (check_validity && X509_cmp_current_time(X509_get0_notBefore(cert.getRawCertificate())) > 0) {
    return Status::InvalidArgument("the certificate " + certificate.string() + " is not valid yet");
  }
  if (!CanCommit(cert.getRawCertificate())) {
    return Status::InvalidArgument("the certificate " + certificate.string() +
                                   " may not sign reports (no nonRepudiation)");
  }
  SiPrivateKey pkey;
  // dcmsign otherwise prompts on the console for an encrypted key.
  pkey.setPrivateKeyPasswd(passphrase.c_str());
  if (pkey.loadPrivateKey(key.c_str(), X509_FILETYPE_PEM).bad()) {
    ERR_clear_error();
    return Status::InvalidArgument(
        "cannot read the private key " + key.string() +
        (passphrase.empty() ? " (is it encrypted? give the passphrase)" : " (wrong passphrase?)"));
  }
  if (!pkey.matchesCertificate(cert)) {
    return Status::InvalidArgument("the key " + key.string() + " does not belong to " + certificate.string());
  }
  SiMDMAC mac(EMT_SHA256);
  SiStructuredReportingVerificationProfile profile;
  DcmSignature sig;
  sig.attach(file.getDataset());
  OFCondition c = sig.createSignature(pkey, cert, mac, profile, EXS_LittleEndianExplicit);
  sig.detach();
  if (c.bad()) return Status::InvalidArgument("signing failed: " + std::string(c.text()));
  // `out` is often `in`, whose values DCMTK may still read while writing: write beside it, then
  // replace it, so a failure leaves the unsigned report as it was.
  const std::filesystem::path part = out.string() + ".part";
  c = file.saveFile(part.c_str(), EXS_LittleEndianExplicit);
  std::error_code ec;
  if (c.good()) std::filesystem::rename(part, out, ec);
  if (c.bad() || ec) {
    const std::string why = c.bad() ? c.text() : ec.message();
    std::filesystem::remove(part, ec);
    return Status::IOError("cannot write " + out.string() + ": " + why);
  }
  return Status::Ok();
}

Result<VerifiedSigner> VerifyReportSignature(const std::filesystem::path& path, const std::filesystem::path& ca_bundle,
                                             const std::filesystem::path& crl) {
  InitializeSigning();
  Result<std::unique_ptr<DicomFile>> file = DicomFile::Open(path, 0, false);
  if (!file.ok()) {
    if (file.status().code() != Status::Code::kCorruption) return file.status();
    return Status::Corruption(path.string() + " is not a readable DICOM file: " + file.status().message());
  }
  DcmDataset& ds = file.value()->dataset();
  if (Status s = CheckCanonical(path, *file.value()); !s.ok()) return s;
  DcmSignature sig;
  sig.attach(&ds);
  struct Detach {
    DcmSignature& s;
    ~Detach() { s.detach(); }
  } detach{sig};
  const unsigned long n = sig.numberOfSignatures();
  if (n == 0) return Status::Corruption("the report is not signed");
  VerifiedSigner signer;
  for (unsigned long i = 0; i < n; ++i) {
    if (sig.selectSignature(i).bad()) return Status::Corruption("cannot read signature " + std::to_string(i + 1));
    if (OFCondition c = sig.verifyCurrent(); c.bad()) {
      return Status::Corruption("signature " + std::to_string(i + 1) + " is invalid (document corrupted): " + c.text());
    }
    if (i > 0) continue;
    // The first signature must cover the whole report: nothing may have been added beside it.
    DcmAttributeTag signed_tags(DCM_DataElementsSigned);
    if (sig.getCurrentDataElementsSigned(signed_tags).good()) {
      std::set<DcmTagKey> covered;
      for (unsigned long k = 0; k < signed_tags.getVM(); ++k) {
        DcmTagKey t;
        if (signed_tags.getTagVal(t, k).good()) covered.insert(t);
      }
      for (unsigned long e = 0; e < ds.card(); ++e) {
        const DcmTagKey t = ds.getElement(e)->getTag();
        if (!Unsignable(t) && !covered.count(t)) {
          return Status::Corruption("attribute " + std::string(t.toString().c_str()) +
                                    " is not covered by the signature");
        }
      }
    }
    // The certificate is not covered by the MAC; OpenSSL reads its DER and ignores what follows,
    // so the even-length pad byte must be the zero PS3.5 prescribes.
    if (DcmItem* item = sig.getSelectedSignatureItem()) {
      const Uint8* der = nullptr;
      unsigned long n = 0;
      if (item->findAndGetUint8Array(DCM_CertificateOfSigner, der, &n).good() && der && n >= 4 && der[0] == 0x30) {
        unsigned long want = 0;
        if (der[1] < 0x80) {
          want = 2 + der[1];
        } else if (der[1] == 0x81) {
          want = 3 + der[2];
        } else if (der[1] == 0x82) {
          want = 4 + (static_cast<unsigned long>(der[2]) << 8 | der[3]);
        }
        if (want == 0 || !(n == want || (n == want + 1 && der[n - 1] == 0))) {
          return Status::Corruption("the signer's certificate value was altered (length or padding)");
        }
      }
    }
    SiCertificate* cert = sig.getCurrentCertificate();
    if (!cert || !cert->getRawCertificate()) return Status::Corruption("the signature carries no certificate");
    X509* x = cert->getRawCertificate();
    SiCertificateVerifier verifier;
    if (verifier.addTrustedCertificateFile(ca_bundle.c_str(), X509_FILETYPE_PEM).bad()) {
      return Status::InvalidArgument("cannot read the CA bundle " + ca_bundle.string());
    }
    if (!crl.empty()) {
      if (verifier.addCertificateRevocationList(crl.c_str(), X509_FILETYPE_PEM).bad()) {
        ERR_clear_error();
        return Status::InvalidArgument("cannot read the revocation list " + crl.string());
      }
      verifier.setCRLverification(OFTrue);
    }
    if (verifier.verifyCertificate(*cert).bad()) {
      ERR_clear_error();
      return Status::Corruption(std::string("the signer's certificate is not trusted: ") + verifier.lastError());
    }
    if (!CanCommit(x)) return Status::Corruption("the signer's certificate may not sign reports (no nonRepudiation)");
    signer.subject = Subject(x);
    signer.common_name = Text(X509_get_subject_name(x), NID_commonName);
    signer.organizational_unit = Text(X509_get_subject_name(x), NID_organizationalUnitName);
    OFString when, uid;
    sig.getCurrentSignatureDateTime(when);
    sig.getCurrentSignatureUID(uid);
    signer.signed_at = std::string(when.c_str());
    signer.signature_uid = std::string(uid.c_str());
    int days = 0, seconds = 0;
    ASN1_TIME* epoch = ASN1_TIME_set(nullptr, 0);
    if (ASN1_TIME_diff(&days, &seconds, epoch, X509_get0_notAfter(x)) == 1) {
      signer.not_after = int64_t{days} * 86400 + seconds;
    }
    ASN1_TIME_free(epoch);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (X509_digest(x, EVP_sha256(), digest, &len) == 1) {
      static const char kHex[] = "0123456789ABCDEF";
      for (unsigned int k = 0; k < len; ++k) {
        if (k > 0) signer.certificate_sha256 += ':';
        signer.certificate_sha256 += kHex[digest[k] >> 4];
        signer.certificate_sha256 += kHex[digest[k] & 0x0f];
      }
    }
  }
  return signer;
}

}  // namespace teleread
