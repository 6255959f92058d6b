#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include <openssl/ssl.h>

#include "server/dicom/dicom_tls.h"
#include "server/pki/pki.h"
#include "tests/support/process.h"

using namespace teleread;
namespace fs = std::filesystem;

namespace {

const char kOpenSsl[] = "/usr/bin/openssl";
const char kOrg[] = "Lixian Regional Imaging Reading Centre";

test::CommandResult OpenSsl(std::vector<std::string> args) {
  args.insert(args.begin(), kOpenSsl);
  return test::RunCommand(args);
}

// `openssl verify` checks the chain, the validity period and, with `purpose`, the key usages.
test::CommandResult Verify(const fs::path& ca_dir, const fs::path& cert, const std::string& purpose = "") {
  std::vector<std::string> args = {"verify", "-CAfile", (ca_dir / "ca.pem").string()};
  if (!purpose.empty()) args.insert(args.end(), {"-purpose", purpose});
  args.push_back(cert.string());
  return OpenSsl(args);
}

std::string Extensions(const fs::path& cert, const std::string& names) {
  auto r = OpenSsl({"x509", "-noout", "-in", cert.string(), "-ext", names});
  REQUIRE(r.exit_code == 0);
  return r.output;
}

IssueRequest Request(CertKind kind, const std::string& cn) {
  IssueRequest request;
  request.kind = kind;
  request.common_name = cn;
  request.organization = kOrg;
  return request;
}

unsigned Mode(const fs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("pki issues radiologist certificates that verify against the centre CA", "[pki]") {
  test::ScratchDir dir;
  const fs::path ca = dir.path() / "ca";
  REQUIRE(InitCertificateAuthority(ca, kOrg).ok());
  CHECK(Mode(ca / "ca.key") == 0600);
  CHECK(Mode(ca) == 0700);

  std::string ca_ext = Extensions(ca / "ca.pem", "basicConstraints,keyUsage");
  CHECK(Contains(ca_ext, "X509v3 Basic Constraints: critical"));
  CHECK(Contains(ca_ext, "CA:TRUE"));
  CHECK(Contains(ca_ext, "Certificate Sign, CRL Sign"));
  auto ca_info = ReadCertificateInfo(ca / "ca.pem");
  REQUIRE(ca_info.ok());
  CHECK(ca_info->subject == std::string("CN=") + kOrg + " CA,O=" + kOrg);

  auto issued = IssueCertificate(ca, Request(CertKind::kRadiologist, "wang.li"));
  REQUIRE(issued.ok());
  CHECK(issued->certificate == ca / "wang.li.pem");
  CHECK(issued->key == ca / "wang.li.key");
  CHECK(Mode(issued->key) == 0600);

  auto verified = Verify(ca, issued->certificate);
  INFO(verified.output);
  CHECK(verified.exit_code == 0);
  CHECK(Contains(verified.output, "OK"));
  CHECK(Verify(ca, issued->certificate, "sslclient").exit_code == 0);
  CHECK(Verify(ca, issued->certificate, "sslserver").exit_code != 0);

  // The .pem holds the certificate and nothing else; the key is unencrypted PKCS#8.
  std::string pem = test::ReadFile(issued->certificate);
  CHECK(pem.rfind("-----BEGIN CERTIFICATE-----\n", 0) == 0);
  CHECK(pem.find("-----BEGIN", 1) == std::string::npos);
  CHECK(pem.size() == pem.find("-----END CERTIFICATE-----\n") + std::string("-----END CERTIFICATE-----\n").size());
  CHECK(test::ReadFile(issued->key).rfind("-----BEGIN PRIVATE KEY-----\n", 0) == 0);

  // The key file holds the key the certificate was issued for.
  auto cert_pub = OpenSsl({"x509", "-noout", "-pubkey", "-in", issued->certificate.string()});
  auto key_pub = OpenSsl({"pkey", "-pubout", "-in", issued->key.string()});
  REQUIRE(cert_pub.exit_code == 0);
  REQUIRE(key_pub.exit_code == 0);
  CHECK(cert_pub.output == key_pub.output);
  CHECK(Contains(OpenSsl({"pkey", "-noout", "-text", "-in", issued->key.string()}).output, "3072 bit"));

  std::string text = OpenSsl({"x509", "-noout", "-text", "-in", issued->certificate.string()}).output;
  CHECK(Contains(text, "Version: 3 (0x2)"));
  CHECK(Contains(text, "Signature Algorithm: ecdsa-with-SHA256"));
  CHECK(Contains(text, "X509v3 Subject Key Identifier"));
  CHECK(Contains(text, "X509v3 Authority Key Identifier"));
  CHECK(Contains(text, "CA:FALSE"));

  std::string ext = Extensions(issued->certificate, "keyUsage,extendedKeyUsage");
  CHECK(Contains(ext, "Digital Signature, Non Repudiation"));
  CHECK(Contains(ext, "TLS Web Client Authentication"));
  CHECK_FALSE(Contains(ext, "TLS Web Server Authentication"));

  auto info = ReadCertificateInfo(issued->certificate);
  REQUIRE(info.ok());
  CHECK(info->subject == std::string("CN=wang.li,OU=radiologist,O=") + kOrg);
  CHECK(info->common_name == "wang.li");
  CHECK(info->organizational_unit == "radiologist");
  const int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(info->not_after > now + 824 * 86400);
  CHECK(info->not_after <= now + 825 * 86400 + 60);
}

TEST_CASE("pki server and member certificates carry their usages and addresses", "[pki]") {
  test::ScratchDir dir;
  REQUIRE(InitCertificateAuthority(dir.path(), kOrg).ok());

  IssueRequest server = Request(CertKind::kServer, "teleread-server");
  server.dns_names = {"localhost", "reading.example.org"};
  server.ip_addresses = {"127.0.0.1", "::1"};
  auto issued = IssueCertificate(dir.path(), server);
  REQUIRE(issued.ok());
  CHECK(Verify(dir.path(), issued->certificate, "sslserver").exit_code == 0);
  // The centre is also the TLS client when it delivers reports over DICOM TLS.
  CHECK(Verify(dir.path(), issued->certificate, "sslclient").exit_code == 0);
  std::string ext = Extensions(issued->certificate, "keyUsage,extendedKeyUsage,subjectAltName");
  CHECK(Contains(ext, "TLS Web Server Authentication"));
  CHECK(Contains(ext, "TLS Web Client Authentication"));
  CHECK(Contains(ext, "Digital Signature, Key Agreement"));
  CHECK(Contains(ext, "IP Address:127.0.0.1"));
  CHECK(Contains(ext, "IP Address:0:0:0:0:0:0:0:1"));
  CHECK(Contains(ext, "DNS:localhost"));
  CHECK(Contains(ext, "DNS:reading.example.org"));
  // What a TLS client checks when it connects to 127.0.0.1.
  CHECK(OpenSsl({"verify", "-CAfile", (dir.path() / "ca.pem").string(), "-verify_ip", "127.0.0.1",
                 issued->certificate.string()})
            .exit_code == 0);
  CHECK(OpenSsl({"verify", "-CAfile", (dir.path() / "ca.pem").string(), "-verify_ip", "10.0.0.1",
                 issued->certificate.string()})
            .exit_code != 0);
  auto info = ReadCertificateInfo(issued->certificate);
  REQUIRE(info.ok());
  CHECK(info->organizational_unit == "server");

  auto member = IssueCertificate(dir.path(), Request(CertKind::kMember, "ZZ_PACS"));
  REQUIRE(member.ok());
  CHECK(Verify(dir.path(), member->certificate, "sslclient").exit_code == 0);
  CHECK(Verify(dir.path(), member->certificate, "sslserver").exit_code == 0);
  std::string member_ext = Extensions(member->certificate, "keyUsage,extendedKeyUsage,subjectAltName");
  CHECK(Contains(member_ext, "TLS Web Server Authentication"));
  CHECK(Contains(member_ext, "TLS Web Client Authentication"));
  CHECK_FALSE(Contains(member_ext, "Non Repudiation"));
  CHECK_FALSE(Contains(member_ext, "Subject Alternative Name"));

  auto admin = IssueCertificate(dir.path(), Request(CertKind::kAdmin, "admin.zhou"));
  REQUIRE(admin.ok());
  auto admin_info = ReadCertificateInfo(admin->certificate);
  REQUIRE(admin_info.ok());
  CHECK(admin_info->subject == std::string("CN=admin.zhou,OU=admin,O=") + kOrg);
  CHECK(Contains(Extensions(admin->certificate, "keyUsage"), "Non Repudiation"));
}

TEST_CASE("pki never overwrites a CA or an issued certificate", "[pki]") {
  test::ScratchDir dir;
  REQUIRE(InitCertificateAuthority(dir.path(), kOrg).ok());
  const std::string ca_key = test::ReadFile(dir.path() / "ca.key");
  const std::string ca_pem = test::ReadFile(dir.path() / "ca.pem");

  Status again = InitCertificateAuthority(dir.path(), "Another Centre");
  CHECK(again.code() == Status::Code::kInvalidArgument);
  CHECK(test::ReadFile(dir.path() / "ca.key") == ca_key);
  CHECK(test::ReadFile(dir.path() / "ca.pem") == ca_pem);

  auto first = IssueCertificate(dir.path(), Request(CertKind::kRadiologist, "wang.li"));
  REQUIRE(first.ok());
  const std::string pem = test::ReadFile(first->certificate);
  const std::string key = test::ReadFile(first->key);
  auto second = IssueCertificate(dir.path(), Request(CertKind::kRadiologist, "wang.li"));
  CHECK_FALSE(second.ok());
  CHECK(second.status().code() == Status::Code::kInvalidArgument);
  CHECK(test::ReadFile(first->certificate) == pem);
  CHECK(test::ReadFile(first->key) == key);

  // A leftover key alone also blocks the name, and is left as it was.
  test::WriteFile(dir.path() / "li.na.key", "not mine");
  CHECK_FALSE(IssueCertificate(dir.path(), Request(CertKind::kRadiologist, "li.na")).ok());
  CHECK(test::ReadFile(dir.path() / "li.na.key") == "not mine");
  CHECK_FALSE(fs::exists(dir.path() / "li.na.pem"));
}

TEST_CASE("pki rejects bad requests without writing anything", "[pki]") {
  test::ScratchDir dir;
  CHECK(IssueCertificate(dir.path(), Request(CertKind::kMember, "ZZ_PACS")).status().code() == Status::Code::kNotFound);
  REQUIRE(InitCertificateAuthority(dir.path(), kOrg).ok());

  for (const char* cn : {"", "../escape", "a/b", ".hidden", "-rf", "ca"}) {
    INFO(cn);
    CHECK(IssueCertificate(dir.path(), Request(CertKind::kMember, cn)).status().code() ==
          Status::Code::kInvalidArgument);
  }
  CHECK_FALSE(fs::exists(dir.path().parent_path() / "escape.pem"));

  IssueRequest bad_ip = Request(CertKind::kServer, "srv");
  bad_ip.ip_addresses = {"127.0.0.256"};
  CHECK(IssueCertificate(dir.path(), bad_ip).status().code() == Status::Code::kInvalidArgument);
  IssueRequest long_cn = Request(CertKind::kMember, std::string(65, 'x'));
  CHECK(IssueCertificate(dir.path(), long_cn).status().code() == Status::Code::kInvalidArgument);
  IssueRequest outlives_ca = Request(CertKind::kMember, "too.long");
  outlives_ca.valid_days = 20 * 365;
  CHECK(IssueCertificate(dir.path(), outlives_ca).status().code() == Status::Code::kInvalidArgument);

  size_t files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++files;
  CHECK(files == 2);  // ca.pem and ca.key only
}

TEST_CASE("pki certificates from another CA or past their validity fail verification", "[pki]") {
  test::ScratchDir dir;
  const fs::path ours = dir.path() / "ours";
  const fs::path theirs = dir.path() / "theirs";
  REQUIRE(InitCertificateAuthority(ours, kOrg).ok());
  REQUIRE(InitCertificateAuthority(theirs, kOrg).ok());  // same name but a different key

  auto foreign = IssueCertificate(theirs, Request(CertKind::kRadiologist, "wang.li"));
  REQUIRE(foreign.ok());
  CHECK(Verify(theirs, foreign->certificate).exit_code == 0);
  auto rejected = Verify(ours, foreign->certificate);
  INFO(rejected.output);
  CHECK(rejected.exit_code != 0);
  CHECK(Contains(rejected.output, "unable to get local issuer certificate"));

  IssueRequest old = Request(CertKind::kRadiologist, "expired.user");
  old.not_before_offset_days = -10;
  old.valid_days = 5;
  auto expired = IssueCertificate(ours, old);
  REQUIRE(expired.ok());
  auto result = Verify(ours, expired->certificate);
  INFO(result.output);
  CHECK(result.exit_code != 0);
  CHECK(Contains(result.output, "expired"));
  auto info = ReadCertificateInfo(expired->certificate);
  REQUIRE(info.ok());
  const int64_t now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(info->not_after < now - 4 * 86400);
  CHECK(info->not_after > now - 6 * 86400);
}

TEST_CASE("pki encrypts a key with its passphrase", "[pki]") {
  test::ScratchDir dir;
  REQUIRE(InitCertificateAuthority(dir.path(), kOrg).ok());
  auto issued = IssueCertificate(dir.path(), Request(CertKind::kRadiologist, "wang.li"), "correct horse");
  REQUIRE(issued.ok());
  CHECK(Mode(issued->key) == 0600);
  CHECK(test::ReadFile(issued->key).rfind("-----BEGIN ENCRYPTED PRIVATE KEY-----\n", 0) == 0);

  CHECK(OpenSsl({"pkey", "-noout", "-in", issued->key.string(), "-passin", "pass:wrong"}).exit_code != 0);
  auto right = OpenSsl({"pkey", "-pubout", "-in", issued->key.string(), "-passin", "pass:correct horse"});
  INFO(right.output);
  REQUIRE(right.exit_code == 0);
  auto cert_pub = OpenSsl({"x509", "-noout", "-pubkey", "-in", issued->certificate.string()});
  CHECK(right.output == cert_pub.output);
  std::string asn1 = OpenSsl({"asn1parse", "-in", issued->key.string()}).output;
  CHECK(Contains(asn1, "aes-256-cbc"));
}

TEST_CASE("pki describes certificates and reports unreadable files", "[pki]") {
  test::ScratchDir dir;
  CHECK(ReadCertificateInfo(dir.path() / "missing.pem").status().code() == Status::Code::kNotFound);
  test::WriteFile(dir.path() / "junk.pem", "not a certificate\n");
  CHECK(ReadCertificateInfo(dir.path() / "junk.pem").status().code() == Status::Code::kInvalidArgument);
  // Non-ASCII names: escaped in the RFC 2253 subject, plain UTF-8 in common_name.
  REQUIRE(InitCertificateAuthority(dir.path(), kOrg).ok());
  auto issued = IssueCertificate(dir.path(), Request(CertKind::kRadiologist, "\u738B\u529B"));
  REQUIRE(issued.ok());
  auto info = ReadCertificateInfo(issued->certificate);
  REQUIRE(info.ok());
  CHECK(info->common_name == "\u738B\u529B");
  CHECK(info->subject == std::string("CN=\\E7\\8E\\8B\\E5\\8A\\9B,OU=radiologist,O=") + kOrg);
  CHECK(Verify(dir.path(), issued->certificate).exit_code == 0);

  CertificateInfo none = DescribeCertificate(nullptr);
  CHECK(none.subject.empty());
  CHECK(none.not_after == 0);
}

TEST_CASE("DICOM TLS takes our certificates and refuses keys and signatures weaker than BCP 195", "[pki]") {
  test::ScratchDir dir;
  const fs::path ca = dir.path() / "ca";
  REQUIRE(InitCertificateAuthority(ca, kOrg).ok());
  REQUIRE(IssueCertificate(ca, Request(CertKind::kMember, "laishui")).ok());
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_method()), SSL_CTX_free);
  REQUIRE(ctx);
  CHECK(UseCertificateChain(ctx.get(), ca / "laishui.pem").ok());
  CHECK(UseCertificateChain(ctx.get(), ca / "ca.pem").ok());
  // Level 0, as DCMTK sets for some profiles: the checks below are ours, not OpenSSL's.
  SSL_CTX_set_security_level(ctx.get(), 0);

  auto weak = [&](const std::string& name, std::vector<std::string> key_args) {
    std::vector<std::string> args = {"req",
                                     "-x509",
                                     "-nodes",
                                     "-subj",
                                     "/CN=" + name,
                                     "-days",
                                     "1",
                                     "-keyout",
                                     (dir.path() / (name + ".key")).string(),
                                     "-out",
                                     (dir.path() / (name + ".pem")).string()};
    args.insert(args.end(), key_args.begin(), key_args.end());
    test::CommandResult r = OpenSsl(args);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    Status s = UseCertificateChain(ctx.get(), dir.path() / (name + ".pem"));
    CHECK_FALSE(s.ok());
    return s.message();
  };
  CHECK_THAT(weak("rsa1024", {"-newkey", "rsa:1024", "-sha256"}), Catch::Contains("below 2048"));
  CHECK_THAT(weak("sha1", {"-newkey", "rsa:2048", "-sha1"}), Catch::Contains("weaker than SHA-256"));
  const fs::path dsa_params = dir.path() / "dsa-params.pem";
  REQUIRE(OpenSsl({"dsaparam", "-out", dsa_params.string(), "2048"}).exit_code == 0);
  CHECK_THAT(weak("dsa", {"-newkey", "dsa:" + dsa_params.string(), "-sha256"}),
             Catch::Contains("DSA keys are refused"));
  const Status missing = UseCertificateChain(ctx.get(), dir.path() / "none.pem");
  CHECK_FALSE(missing.ok());
  CHECK_THAT(missing.message(), Catch::Contains("none.pem"));
}

TEST_CASE("pki dates each revocation list after the last, as OpenSSL keeps the first of equal dates", "[pki]") {
  test::ScratchDir dir;
  const fs::path ca = dir.path() / "ca";
  REQUIRE(InitCertificateAuthority(ca, kOrg).ok());
  REQUIRE(IssueCertificate(ca, Request(CertKind::kMember, "laishui")).ok());
  REQUIRE(IssueCertificate(ca, Request(CertKind::kMember, "yixian")).ok());
  auto last_update = [&] {
    test::CommandResult r = OpenSsl({"crl", "-in", (ca / "crl.pem").string(), "-noout", "-lastupdate"});
    REQUIRE(r.exit_code == 0);
    struct tm t {};
    REQUIRE(strptime(r.output.c_str(), "lastUpdate=%b %d %H:%M:%S %Y GMT", &t) != nullptr);
    return timegm(&t);
  };
  REQUIRE(WriteRevocationList(ca, "laishui").ok());
  const time_t first = last_update();
  REQUIRE(WriteRevocationList(ca, "yixian").ok());  // at once, most often within the same second
  const time_t second = last_update();
  CHECK(second > first);
  CHECK(second <= std::time(nullptr));  // not dated ahead: a list from the future is not yet valid
  test::CommandResult checked = OpenSsl({"verify", "-crl_check", "-CAfile", (ca / "ca.pem").string(), "-CRLfile",
                                         (ca / "crl.pem").string(), (ca / "yixian.pem").string()});
  CHECK(checked.exit_code != 0);
  CHECK(Contains(checked.output, "certificate revoked"));
}
