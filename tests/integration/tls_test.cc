// DICOM TLS against the real server: DCMTK's storescu/echoscu with member certificates made by
// the server's pki command, certificates bound to their member, the TLS-only port, reports
// delivered over TLS to a storescp that checks our certificate while we check its address.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>
#include <thread>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/scu.h"
#include "dcmtk/dcmtls/tlslayer.h"

#include "common/dicom.h"
#include "common/signing.h"
#include "server/dicom/dicom_tls.h"
#include "tests/support/orthanc.h"
#include "tests/support/reports.h"
#include "tests/support/scu.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

// storescu -v: its exit code is 0 even when the C-STORE is refused, so success is read from the
// response status it prints (Stored).
CommandResult Store(uint16_t port, const std::string& calling_ae, const std::vector<std::string>& tls,
                    const fs::path& file) {
  return StoreTo(port, calling_ae, {file.string()}, tls);
}

}  // namespace

TEST_CASE("DICOM TLS: a member's certificate opens its own AE titles and no one else's", "[tls]") {
  ScratchDir dir;
  const fs::path pki = dir.path() / "server" / "pki";
  ServerOptions o;
  o.edits = {{"^\\[reading\\]$", DicomTlsTable(pki, "port = 0")},
             {"^require_tls = false$", "require_tls = true"},
             // Far beyond storescu's 60 s below: were the silent peers to hold it up, it would time out.
             {"^acse_timeout_seconds = .*$", "acse_timeout_seconds = 300"}};
  TestServer server(dir.path() / "server", o);
  IssueCert(pki, "member", "zhuozhou");
  IssueCert(pki, "member", "LS_PACS");  // a member certificate may name one of its AE titles
  IssueCert(pki, "radiologist", "li.na");
  // The same names from a CA the centre never saw.
  const fs::path rogue = dir.path() / "rogue";
  REQUIRE(RunCommand({TELEREAD_SERVER_BIN, "pki", "init", rogue.string()}).exit_code == 0);
  IssueCert(rogue, "member", "zhuozhou");
  server.Start();
  REQUIRE(server.tls_port() != 0);
  REQUIRE(server.tls_port() != server.port());
  const fs::path samples = WriteSampleConsortium(dir.path() / "samples", 1);
  const fs::path zz = SampleOf(samples, "ZZ_PACS"), ls = SampleOf(samples, "LS_PACS");
  const fs::path ca = pki / "ca.pem";
  const uint16_t tls = server.tls_port();

  auto stored = [&] { return IndexedPaths(server.storage()).size(); };
  // A connection that says nothing and one that sent one byte of a handshake hold up nobody.
  const int silent = ConnectTcp(tls), dripping = ConnectTcp(tls);
  REQUIRE(::send(dripping, "\x16", 1, 0) == 1);
  CommandResult ok = Store(tls, "ZZ_PACS", TlsArgs(pki, "zhuozhou", ca), zz);
  INFO(ok.output << server.Log());
  REQUIRE(Stored(ok));
  CHECK(stored() == 1);
  ::close(silent);
  ::close(dripping);

  // zhuozhou requires TLS with its certificate: plain TCP, anonymous TLS and another member's
  // certificate are all refused, and nothing is stored.
  CHECK(NotAssociated(Store(server.port(), "ZZ_PACS", {}, zz)));
  CHECK(NotAssociated(Store(tls, "ZZ_PACS", {"+tla", "+cf", ca.string()}, zz)));
  CHECK(NotAssociated(Store(tls, "ZZ_PACS", TlsArgs(pki, "LS_PACS", ca), zz)));
  CHECK(NotAssociated(Store(tls, "ZZ_PACS", TlsArgs(pki, "li.na", ca), zz)));
  // A certificate from another CA fails the handshake.
  {
    CommandResult rogue_store = Store(tls, "ZZ_PACS", TlsArgs(rogue, "zhuozhou", ca), zz);
    INFO(rogue_store.output << server.Log());
    CHECK(NotAssociated(rogue_store));
  }
  // Plain TCP on the TLS port is refused before DICOM is spoken.
  CHECK(NotAssociated(Store(tls, "LS_PACS", {}, ls)));
  CHECK(stored() == 1);

  // Laishui does not require TLS: plain, anonymous TLS and its own certificate all work, but
  // zhuozhou's certificate cannot call as Laishui.
  CHECK(NotAssociated(Store(tls, "LS_PACS", TlsArgs(pki, "zhuozhou", ca), ls)));
  CHECK(stored() == 1);
  // Each of the three is answered Success (a refused C-STORE would leave storescu's exit code 0).
  CHECK(Stored(Store(tls, "LS_PACS", TlsArgs(pki, "LS_PACS", ca), ls)));
  CHECK(Stored(Store(tls, "LS_PACS", {"+tla", "+cf", ca.string()}, ls)));
  CHECK(Stored(Store(server.port(), "LS_PACS", {}, ls)));
  CHECK(stored() == 2);  // the same object three times

  const std::string log = server.Log();
  CHECK(log.find("member zhuozhou requires TLS with its client certificate") != std::string::npos);
  CHECK(log.find("is not member zhuozhou's") != std::string::npos);
  CHECK(log.find("is not member laishui's") != std::string::npos);
  CHECK(log.find("TLS handshake failed") != std::string::npos);
  CHECK(log.find("not a TLS handshake, and this port takes TLS only") != std::string::npos);
  CHECK(Metric(server, "teleread_dicom_tls_associations_total") == 3);
  CHECK(Metric(server, "teleread_dicom_tls_refused_total") == 7);  // 6 above and the dripping handshake
  // The association still works for the members after all that.
  CHECK(Echo(server, "YX_PACS").exit_code == 0);
  CHECK(server.Stop(SIGTERM) == 0);  // a clean exit: under ASan, nothing leaked
}

TEST_CASE("DICOM TLS on the DICOM port itself refuses plain associations when told to", "[tls]") {
  ScratchDir dir;
  const fs::path pki = dir.path() / "server" / "pki";
  ServerOptions o;
  o.edits = {{"^\\[reading\\]$", DicomTlsTable(pki, "same_port = true\nallow_plain = false")}};
  TestServer server(dir.path() / "server", o);
  IssueCert(pki, "member", "laishui");
  server.Start();
  REQUIRE(server.tls_port() == server.port());
  const fs::path samples = WriteSampleConsortium(dir.path() / "samples", 1);
  const fs::path ls = SampleOf(samples, "LS_PACS");
  CHECK(Store(server.port(), "LS_PACS", {}, ls).exit_code != 0);
  CommandResult r = Store(server.port(), "LS_PACS", TlsArgs(pki, "laishui", pki / "ca.pem"), ls);
  INFO(r.output << server.Log());
  CHECK(r.exit_code == 0);
  CHECK(IndexedPaths(server.storage()).size() == 1);
  CHECK(server.Stop(SIGTERM) == 0);  // a clean exit: under ASan, nothing leaked
}

TEST_CASE("a TLS association beyond the worker limit is rejected with a reason over TLS", "[tls][concurrency]") {
  const bool same_port = GENERATE(false, true);
  ScratchDir dir;
  const fs::path pki = dir.path() / "server" / "pki";
  ServerOptions o;
  o.max_associations = 1;
  o.edits = {{"^\\[reading\\]$", DicomTlsTable(pki, same_port ? "same_port = true" : "port = 0")}};
  TestServer server(dir.path() / "server", o);
  IssueCert(pki, "member", "laishui");
  server.Start();
  INFO((same_port ? "TLS on the DICOM port" : "TLS on its own port"));
  const fs::path ls = SampleOf(WriteSampleConsortium(dir.path() / "samples", 1), "LS_PACS");

  TestScu holder(server.port(), "LS_PACS", {UID_CTImageStorage});  // the one worker
  REQUIRE(holder.Connect() == "");
  // The reason comes at once, not after a wait for the worker: a storescu left waiting would see
  // no A-ASSOCIATE-RJ before its own timeout.
  CommandResult refused = Store(server.tls_port(), "LS_PACS", TlsArgs(pki, "laishui", pki / "ca.pem"), ls);
  INFO(refused.output << server.Log());
  CHECK(NotAssociated(refused));
  CHECK_THAT(refused.output, Catch::Contains("Local Limit Exceeded"));
  CHECK(WaitFor([&] { return server.Log().find("TLS association refused: all 1 workers busy\n") != std::string::npos; },
                5));
  holder.Release();
  // With the worker free again the same association goes through.
  CHECK(WaitFor(
      [&] { return Store(server.tls_port(), "LS_PACS", TlsArgs(pki, "laishui", pki / "ca.pem"), ls).exit_code == 0; },
      10));
  CHECK(IndexedPaths(server.storage()).size() == 1);
  CHECK(server.Stop(SIGTERM) == 0);  // a clean exit: under ASan, nothing leaked
}

TEST_CASE("a revoked certificate opens nothing: DICOM TLS and HTTPS check the centre's CRL", "[tls]") {
  ScratchDir dir;
  const fs::path pki = dir.path() / "server" / "pki";
  const fs::path crl = pki / "crl.pem";
  ServerOptions o;
  o.edits = {{"^\\[reading\\]$", DicomTlsTable(pki, "port = 0\ncrl = \"" + crl.string() + "\"")},
             {"^admins = ", "crl = \"" + crl.string() + "\"\nadmins = "}};
  TestServer server(dir.path() / "server", o);
  IssueCert(pki, "member", "laishui");
  IssueCert(pki, "member", "LS_PACS");
  auto revoke = [&](const std::string& name) {
    CommandResult r = RunCommand({TELEREAD_SERVER_BIN, "pki", "crl", pki.string(), "--revoke", name});
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
  };
  revoke("laishui");
  revoke("zhao.min");  // a radiologist who has left
  CommandResult again = RunCommand({TELEREAD_SERVER_BIN, "pki", "crl", pki.string(), "--revoke", "laishui"});
  CHECK(again.exit_code != 0);
  CHECK_THAT(again.output, Catch::Contains("revoked already"));
  server.Start();
  const fs::path samples = WriteSampleConsortium(dir.path() / "samples", 1);
  const fs::path ls = SampleOf(samples, "LS_PACS");
  const fs::path ca = pki / "ca.pem";

  // A member checking a report offline: the revoked signer fails against the list.
  const fs::path report = dir.path() / "by-zhao.min.dcm";
  WriteSignedReport(FindSampleStudy(samples, ReadInstanceSummary(ls)->study_instance_uid), pki, "zhao.min", report);
  CommandResult verified = RunCommand({TELEREAD_CLI_BIN, "report", "verify", report.string(), "--ca", ca.string()});
  CHECK(verified.exit_code == 0);
  CommandResult checked =
      RunCommand({TELEREAD_CLI_BIN, "report", "verify", report.string(), "--ca", ca.string(), "--crl", crl.string()});
  CHECK(checked.exit_code != 0);
  CHECK_THAT(checked.output, Catch::Contains("revoked"));

  CommandResult refused = Store(server.tls_port(), "LS_PACS", TlsArgs(pki, "laishui", ca), ls);
  INFO(refused.output << server.Log());
  CHECK(refused.exit_code != 0);
  CHECK(IndexedPaths(server.storage()).empty());
  CHECK(Store(server.tls_port(), "LS_PACS", TlsArgs(pki, "LS_PACS", ca), ls).exit_code == 0);
  CHECK(IndexedPaths(server.storage()).size() == 1);
  CHECK(Metric(server, "teleread_dicom_tls_refused_total") == 1);
  CHECK_THAT(server.Log(), Catch::Contains("certificate revoked"));

  CHECK(server.Call("zhao.min", "GET", "/api/v1/worklist").status != 200);
  CHECK(server.Call("wang.li", "GET", "/api/v1/worklist").status == 200);
  const std::string metrics = server.Call("ops", "GET", "/metrics").body;
  CHECK_THAT(metrics, Catch::Contains("teleread_certificate_expiry_seconds{certificate=\"dicom_tls CRL\"}"));
  CHECK_THAT(metrics, Catch::Contains("teleread_certificate_expiry_seconds{certificate=\"https CRL\"}"));

  // Revoked while the server runs: refused once the new list is read, without a restart. Each
  // list is dated after the last, even within one second, as OpenSSL prefers the later one.
  revoke("LS_PACS");
  revoke("wang.li");
  CHECK(WaitFor([&] { return server.Log().find("revocation list " + crl.string() + " re-read") != std::string::npos; },
                15));
  CHECK(Store(server.tls_port(), "LS_PACS", TlsArgs(pki, "LS_PACS", ca), ls).exit_code != 0);
  CHECK(server.Call("wang.li", "GET", "/api/v1/worklist").status != 200);
  CHECK(server.Call("ops", "GET", "/api/v1/worklist").status == 200);

  // A list from another CA is refused, and the last good one stays in use.
  const fs::path rogue = dir.path() / "rogue";
  REQUIRE(RunCommand({TELEREAD_SERVER_BIN, "pki", "init", rogue.string()}).exit_code == 0);
  REQUIRE(RunCommand({TELEREAD_SERVER_BIN, "pki", "crl", rogue.string()}).exit_code == 0);
  fs::copy_file(rogue / "crl.pem", pki / "crl.pem.rogue");
  fs::rename(pki / "crl.pem.rogue", crl);
  CHECK(WaitFor([&] { return server.Log().find("changed but is refused") != std::string::npos; }, 15));
  CHECK_THAT(server.Log(), Catch::Contains("not signed by the CA of"));
  CHECK(server.Call("wang.li", "GET", "/api/v1/worklist").status != 200);
  CHECK(server.Call("ops", "GET", "/api/v1/worklist").status == 200);
  CHECK(server.Stop(SIGTERM) == 0);  // a clean exit: under ASan, nothing leaked
}

TEST_CASE("C-GET over DICOM TLS returns a member's study, and only to that member's certificate", "[tls]") {
  ScratchDir dir;
  const fs::path pki = dir.path() / "server" / "pki";
  ServerOptions o;
  o.edits = {{"^\\[reading\\]$", DicomTlsTable(pki, "port = 0")}, {"^require_tls = false$", "require_tls = true"}};
  TestServer server(dir.path() / "server", o);
  IssueCert(pki, "member", "zhuozhou");
  IssueCert(pki, "member", "laishui");
  server.Start();
  const fs::path samples = WriteSampleConsortium(dir.path() / "samples", 1);
  const fs::path zz = SampleOf(samples, "ZZ_PACS");
  const fs::path ca = pki / "ca.pem";
  REQUIRE(Store(server.tls_port(), "ZZ_PACS", TlsArgs(pki, "zhuozhou", ca), zz).exit_code == 0);
  const InstanceSummary sample = ReadInstanceSummary(zz).value();
  const std::string study = sample.study_instance_uid;

  // DCMTK's own C-GET user (DcmSCU, as getscu, whose 3.6.7 build has no TLS options) over a
  // TLS layer set up as the server's: DcmTLSSCU would load the certificate with the leaky
  // setCertificateFile (UseCertificateChain).
  auto get = [&](const std::string& calling_ae, const std::string& certificate, const fs::path& out) {
    fs::create_directories(out);
    DcmTLSTransportLayer layer(NET_REQUESTOR, nullptr, OFFalse);
    REQUIRE(layer.setTLSProfile(TSP_Profile_BCP195_ND).good());
    REQUIRE(layer.activateCipherSuites().good());
    layer.setPrivateKeyPasswd("");
    REQUIRE(layer.setPrivateKeyFile((pki / (certificate + ".key")).c_str(), DCF_Filetype_PEM).good());
    REQUIRE(UseCertificateChain(layer.getNativeHandle(), pki / (certificate + ".pem")).ok());
    REQUIRE(layer.addTrustedCertificateFile(ca.c_str(), DCF_Filetype_PEM).good());
    layer.setCertificateVerification(DCV_requireCertificate);
    struct TlsScu : DcmSCU {
      using DcmSCU::useSecureConnection;
    } scu;
    scu.setAETitle(calling_ae.c_str());
    scu.setPeerAETitle("LX_READ");
    scu.setPeerHostName("127.0.0.1");
    scu.setPeerPort(server.tls_port());
    scu.setACSETimeout(10);
    scu.setDIMSETimeout(10);
    scu.setStorageDir(out.c_str());
    scu.setStorageMode(DCMSCU_STORAGE_DISK);
    const OFList<OFString> syntaxes = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};
    scu.addPresentationContext(UID_GETStudyRootQueryRetrieveInformationModel, syntaxes);
    scu.addPresentationContext(sample.sop_class_uid.c_str(), {sample.transfer_syntax_uid.c_str()}, ASC_SC_ROLE_SCP);
    REQUIRE(scu.initNetwork().good());
    REQUIRE(scu.useSecureConnection(&layer).good());
    if (scu.negotiateAssociation().bad()) return -1;
    DcmDataset keys;
    keys.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
    keys.putAndInsertString(DCM_StudyInstanceUID, study.c_str());
    OFList<RetrieveResponse*> responses;
    const T_ASC_PresentationContextID pc =
        scu.findPresentationContextID(UID_GETStudyRootQueryRetrieveInformationModel, "");
    const bool sent = pc != 0 && scu.sendCGETRequest(pc, &keys, &responses).good();
    int status = sent && !responses.empty() ? responses.back()->m_status : -1;
    for (RetrieveResponse* r : responses) delete r;
    scu.releaseAssociation();
    return status;
  };
  const fs::path mine = dir.path() / "zz-got", theirs = dir.path() / "ls-got";
  CHECK(get("ZZ_PACS", "zhuozhou", mine) == 0);
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(mine)) files += e.is_regular_file();
  CHECK(files == 1);
  // Laishui's certificate cannot call as Zhuozhou; as itself it sees nothing of Zhuozhou's.
  CHECK(get("ZZ_PACS", "laishui", theirs) == -1);
  CHECK(get("LS_PACS", "laishui", theirs) == 0xC000);  // nothing in its scope matches
  CHECK(fs::is_empty(theirs));
  INFO(server.Log());
  CHECK_THAT(server.Log(), Catch::Contains("C-GET"));
  CHECK(server.Stop(SIGTERM) == 0);  // a clean exit: under ASan, nothing leaked
}

TEST_CASE("certificates that expire within 30 days are warned about in the log and the metrics", "[tls]") {
  ScratchDir dir;
  const fs::path pki = dir.path() / "server" / "pki";
  ServerOptions o;
  o.edits = {{"^\\[reading\\]$", DicomTlsTable(pki, "port = 0")}};
  TestServer server(dir.path() / "server", o);
  IssueCert(pki, "member", "laishui", {"--days", "10"});
  server.Start();
  CHECK(Metric(server, "teleread_certificates_expiring") == 0);
  std::vector<std::string> echo = {ECHOSCU_BIN, "-aet", "LS_PACS", "-aec", "LX_READ"};
  for (const std::string& a : TlsArgs(pki, "laishui", pki / "ca.pem")) echo.push_back(a);
  echo.insert(echo.end(), {"127.0.0.1", std::to_string(server.tls_port())});
  REQUIRE(RunCommand(echo).exit_code == 0);
  CHECK(Metric(server, "teleread_certificates_expiring") == 1);
  HttpReply metrics = server.Call("ops", "GET", "/metrics");
  std::smatch m;
  REQUIRE(std::regex_search(
      metrics.body, m,
      std::regex(R"(teleread_certificate_expiry_seconds\{certificate="peer CN=laishui[^"]*"\} (\d+))")));
  CHECK(std::stol(m[1]) > 9 * 86400);
  CHECK(std::stol(m[1]) <= 10 * 86400 + 600);
  CHECK(std::regex_search(server.Log(), std::regex("certificate peer CN=laishui.* expires in (9|10) day")));
  CHECK(server.Stop(SIGTERM) == 0);  // a clean exit: under ASan, nothing leaked
}

TEST_CASE("signed reports go to the member over DICOM TLS and only to a peer whose certificate names it",
          "[tls][reports]") {
  ScratchDir dir;
  const fs::path pki = dir.path() / "server" / "pki";
  const fs::path ca = pki / "ca.pem";
  // Zhuozhou's PACS has a certificate for 127.0.0.1; Laishui's names another address.
  MemberPacs zz(dir.path() / "zz_pacs", "ZZ_PACS", TlsArgs(pki, "ZZ_PACS", ca));
  MemberPacs ls(dir.path() / "ls_pacs", "LS_PACS", TlsArgs(pki, "LS_PACS", ca));
  ServerOptions o;
  o.edits = {{"^\\[reading\\]$", DicomTlsTable(pki, "port = 0")},
             {"^port = 11201$", "port = " + std::to_string(zz.port())},
             {"^tls = false$", "tls = true"},
             {"^port = 11202$", "port = " + std::to_string(ls.port()) + "\ntls = true"},
             {"^delivery_retry_seconds = .*$", "delivery_retry_seconds = 1"},
             {"^delivery_retry_max_seconds = .*$", "delivery_retry_max_seconds = 1"}};
  TestServer server(dir.path() / "server", o);
  IssueCert(pki, "member", "ZZ_PACS", {"--ip", "127.0.0.1"});
  IssueCert(pki, "member", "LS_PACS", {"--ip", "10.9.9.9"});
  zz.Start();
  ls.Start();
  server.Start();
  const fs::path samples = dir.path() / "samples";
  PushSampleConsortium(server, samples, 1);
  std::string zz_ct, ls_study;
  for (const auto& item : WaitForWorklist(server, 6, "zhao.min")) {
    if (item["member"] == "zhuozhou" && item["modalities"] == "CT") zz_ct = item["study_instance_uid"];
    if (item["member"] == "laishui") ls_study = item["study_instance_uid"];
  }
  REQUIRE_FALSE(zz_ct.empty());
  REQUIRE_FALSE(ls_study.empty());
  std::string zz_sop;
  for (const std::string& study : {zz_ct, ls_study}) {
    // zhao.min reads every modality (Laishui's study may be an ECG).
    REQUIRE(server.Call("zhao.min", "POST", "/api/v1/studies/" + study + "/claim").status == 200);
    const fs::path report = dir.path() / (study + ".dcm");
    WriteSignedReport(FindSampleStudy(samples, study), pki, "zhao.min", report);
    HttpReply r = SubmitReport(server, "zhao.min", study, report);
    INFO(r.body);
    REQUIRE(r.status == 201);
    if (study == zz_ct) zz_sop = r.Json()["sop_instance_uid"];
  }
  auto state = [&](const std::string& study) {
    const nlohmann::json items = server.Call("wang.li", "GET", "/api/v1/studies/" + study + "/reports").Json()["items"];
    return items.size() == 1 ? items[0]["delivery"]["state"].get<std::string>() : std::string();
  };
  REQUIRE(WaitFor([&] { return state(zz_ct) == "delivered" && zz.Files().size() == 2; }));  // SR and PDF copy
  CHECK(zz.Received(zz_sop) == 1);  // storescp keeps every receipt: a second delivery would count
  // Laishui's peer presents a valid certificate from our own CA, but for 10.9.9.9: never delivered.
  REQUIRE(WaitFor([&] { return server.Log().find("IP address mismatch") != std::string::npos; }));
  CHECK(state(ls_study) != "delivered");
  CHECK(ls.Files().empty());
  CHECK(server.Log().find("the peer's certificate 'CN=LS_PACS,OU=member") != std::string::npos);
  CHECK(server.Stop(SIGTERM) == 0);  // a clean exit: under ASan, nothing leaked
}

TEST_CASE("Orthanc as a member PACS pushes over DICOM TLS and receives its signed report over DICOM TLS",
          "[tls][orthanc]") {
  ScratchDir dir;
  const fs::path pki = dir.path() / "server" / "pki";
  const uint16_t orthanc_dicom = FreePort();
  ServerOptions o;
  o.edits = {{"^\\[reading\\]$", DicomTlsTable(pki, "port = 0")},
             {"^require_tls = false$", "require_tls = true"},
             {"^port = 11201$", "port = " + std::to_string(orthanc_dicom)},
             {"^tls = false$", "tls = true"}};
  TestServer server(dir.path() / "server", o);
  IssueCert(pki, "member", "ZZ_PACS", {"--ip", "127.0.0.1"});  // Orthanc's, as TLS server and client
  server.Start();

  // Orthanc 1.10 with DICOM TLS.
  OrthancPacs orthanc(dir.path() / "orthanc", "ZZ_PACS", orthanc_dicom,
                      R"(
  "DicomTlsEnabled": true,
  "DicomTlsCertificate": ")" +
                          (pki / "ZZ_PACS.pem").string() + R"(",
  "DicomTlsPrivateKey": ")" +
                          (pki / "ZZ_PACS.key").string() + R"(",
  "DicomTlsTrustedCertificates": ")" +
                          (pki / "ca.pem").string() + R"(",
  "DicomTlsRemoteCertificateRequired": true,
  "DicomModalities": { "teleread": { "AET": "LX_READ", "Host": "127.0.0.1", "Port": )" +
                          std::to_string(server.tls_port()) + R"(, "UseDicomTls": true } },)");
  orthanc.Start();

  // A study enters Orthanc by its REST API and goes to the centre by Orthanc's C-STORE over TLS.
  const fs::path samples = WriteSampleConsortium(dir.path() / "samples", 1);
  std::vector<std::string> ids;
  for (const auto& e : fs::recursive_directory_iterator(samples / "ZZ_PACS")) {
    if (!e.is_regular_file()) continue;
    CommandResult up = orthanc.Rest({"/instances", "-X", "POST", "--data-binary", "@" + e.path().string()});
    REQUIRE(up.exit_code == 0);
    ids.push_back(nlohmann::json::parse(up.output)["ID"]);
  }
  nlohmann::json resources = nlohmann::json::array();
  for (const std::string& id : ids) resources.push_back(id);
  const nlohmann::json store_body = {{"Resources", resources}, {"Synchronous", true}};
  CommandResult sent = orthanc.Rest({"/modalities/teleread/store", "-X", "POST", "-d", store_body.dump()});
  INFO(sent.output << orthanc.Log() << server.Log());
  REQUIRE(sent.exit_code == 0);
  CHECK(IndexedPaths(server.storage()).size() == ids.size());
  CHECK(Metric(server, "teleread_dicom_tls_associations_total") >= 1);

  // The report goes back to Orthanc over TLS; Orthanc checks our certificate, we check its address.
  REQUIRE(WaitFor([&] { return server.Call("zhao.min", "GET", "/api/v1/worklist").Json()["items"].size() == 2; }));
  const nlohmann::json worklist = server.Call("zhao.min", "GET", "/api/v1/worklist").Json();
  const std::string study = worklist["items"][0]["study_instance_uid"];
  REQUIRE(server.Call("zhao.min", "POST", "/api/v1/studies/" + study + "/claim").status == 200);
  const fs::path report = dir.path() / "report.dcm";
  WriteSignedReport(FindSampleStudy(samples, study), pki, "zhao.min", report);
  HttpReply accepted = SubmitReport(server, "zhao.min", study, report);
  INFO(accepted.body);
  REQUIRE(accepted.status == 201);
  const std::string sop = accepted.Json()["sop_instance_uid"];
  REQUIRE(WaitFor([&] { return !orthanc.InstanceId(sop).empty(); }));
  // What Orthanc holds (its DICOM port speaks TLS only) still verifies as the radiologist signed it.
  const fs::path copy = dir.path() / "from-orthanc.dcm";
  REQUIRE(orthanc.Rest({"/instances/" + orthanc.InstanceId(sop) + "/file", "-o", copy.string()}).exit_code == 0);
  auto verified = VerifyReportSignature(copy, pki / "ca.pem");
  INFO(verified.status().ToString());
  CHECK(verified.ok());
  CHECK(orthanc.Received(sop) == 1);

  // Orthanc lost the study: it finds it at the centre by C-FIND and pulls it back by C-MOVE,
  // the request over TLS and the centre's sub-association to Orthanc over TLS.
  nlohmann::json lookup = nlohmann::json::parse(orthanc.Rest({"/tools/lookup", "-X", "POST", "-d", study}).output);
  REQUIRE(lookup.size() == 1);
  REQUIRE(orthanc.Rest({"/studies/" + lookup[0]["ID"].get<std::string>(), "-X", "DELETE"}).exit_code == 0);
  REQUIRE(orthanc.InstanceId(sop).empty());
  const nlohmann::json query = {{"Level", "Study"}, {"Query", {{"StudyInstanceUID", study}}}};
  CommandResult asked = orthanc.Rest({"/modalities/teleread/query", "-X", "POST", "-d", query.dump()});
  INFO(asked.output << orthanc.Log() << server.Log());
  REQUIRE(asked.exit_code == 0);
  const std::string query_id = nlohmann::json::parse(asked.output)["ID"];
  CHECK(nlohmann::json::parse(orthanc.Rest({"/queries/" + query_id + "/answers"}).output).size() == 1);
  const nlohmann::json move = {{"Level", "Study"},
                               {"Resources", {{{"StudyInstanceUID", study}}}},
                               {"TargetAet", "ZZ_PACS"},
                               {"Synchronous", true}};
  CommandResult moved = orthanc.Rest({"/modalities/teleread/move", "-X", "POST", "-d", move.dump()});
  INFO(moved.output);
  REQUIRE(moved.exit_code == 0);
  CHECK_FALSE(orthanc.InstanceId(sop).empty());  // the report came back with the images
  for (const std::string& id : ids) CHECK(orthanc.Rest({"/instances/" + id}).exit_code == 0);
  CHECK(orthanc.Received(sop) == 2);
  CHECK_THAT(server.Log(), Catch::Contains("C-MOVE"));
  CHECK(server.Stop(SIGTERM) == 0);  // a clean exit: under ASan, nothing leaked
}
