#pragma once
// DICOM digital signatures (PS3.15 C.1, the Structured Reporting verification profile) over a
// whole report, made with the radiologist's own key on the workstation and checked on the
// server and, offline, at the member hospital. DCMTK dcmsign over OpenSSL.
//
// Thread-safety: functions may be called concurrently after InitializeSigning().
#include <cstdint>
#include <filesystem>
#include <string>

#include "common/status.h"

namespace teleread {

// Once per process, before threads start.
void InitializeSigning();

// Signs every attribute of the SR in `in` and writes the result to `out` (may equal `in`).
// The key may be PEM encrypted (passphrase) or not. InvalidArgument when the key does not match
// the certificate, the certificate cannot sign (key usage) or is outside its validity period
// (unless `check_validity` is false: tests forge what an attacker could), or the SR is not
// VERIFIED.
Status SignReportFile(const std::filesystem::path& in, const std::filesystem::path& out,
                      const std::filesystem::path& certificate, const std::filesystem::path& key,
                      const std::string& passphrase = "", bool check_validity = true);

struct VerifiedSigner {
  std::string subject;              // RFC 2253, e.g. "CN=wang.li,OU=radiologist,O=..."
  std::string common_name;          // e.g. "wang.li"
  std::string organizational_unit;  // e.g. "radiologist"
  std::string signed_at;            // Digital Signature DateTime, DICOM DT
  std::string signature_uid;
  int64_t not_after = 0;           // the signer certificate's expiry, seconds since the epoch
  std::string certificate_sha256;  // of the signer certificate's DER, "AB:CD:..." as openssl prints it
};

// Checks that `file` carries at least one signature, that every signature verifies, that every
// top-level attribute of the data set is covered by the first one, that its certificate chains
// to `ca_bundle` and is valid now, and that its key usage allows content commitment
// (nonRepudiation), and, given the CA's revocation list `crl` (PEM), that it is not revoked.
// Returns the first signature's signer. Corruption with the precise reason (e.g. "signature is
// invalid (document corrupted)", "certificate has expired", "certificate revoked") otherwise.
Result<VerifiedSigner> VerifyReportSignature(const std::filesystem::path& file, const std::filesystem::path& ca_bundle,
                                             const std::filesystem::path& crl = {});

}  // namespace teleread
