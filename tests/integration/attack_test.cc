// The attack suite of issue 19: each finding of the outside review, reproduced against a real
// server on 127.0.0.1 with the tools the reviewers used (DCMTK, curl, raw sockets).
#include <catch2/catch.hpp>

#include <functional>
#include <regex>
#include <thread>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"

#include <fstream>

#include "tests/support/asan.h"
#include "tests/support/process.h"
#include "tests/support/scu.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

void Issue(const fs::path& pki, const std::string& kind, const std::string& name) {
  CommandResult r = RunCommand({TELEREAD_SERVER_BIN, "pki", "issue", pki.string(), "--kind", kind, "--name", name});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
}

// echoscu as `calling_ae`, over TLS with certificate `cert` under `pki` when given.
CommandResult EchoAs(uint16_t port, const std::string& calling_ae, const fs::path& pki = {},
                     const std::string& cert = "") {
  std::vector<std::string> argv = {ECHOSCU_BIN, "-aet", calling_ae, "-aec", "LX_READ"};
  if (!cert.empty()) {
    argv.insert(argv.end(), {"+tls", (pki / (cert + ".key")).string(), (pki / (cert + ".pem")).string(), "-pw", "+cf",
                             (pki / "ca.pem").string()});
  }
  argv.insert(argv.end(), {"127.0.0.1", std::to_string(port)});
  return RunCommand(argv, std::chrono::seconds(30));
}

bool WaitUntil(const std::function<bool()>& done, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

}  // namespace

TEST_CASE("attack 1: a centre AE title's name alone opens nothing, its certificate does", "[tls][attack]") {
  ScratchDir dir;
  const fs::path pki = dir.path() / "server" / "pki";
  ServerOptions o;
  o.plain_centre_workstation = false;  // the sample config as shipped: nothing plain for LX_WS1
  o.edits = {{"^\\[reading\\]$", DicomTlsTable(pki, "port = 0")}};
  TestServer server(dir.path() / "server", o);
  Issue(pki, "workstation", "LX_WS1");
  Issue(pki, "workstation", "LX_WS2");
  Issue(pki, "member", "LS_PACS");
  server.Start();
  const fs::path samples = WriteSampleConsortium(dir.path() / "samples", 1);
  REQUIRE(StoreFiles(server, "LS_PACS", {(samples / "LS_PACS").string()}).exit_code == 0);

  // The review's probe: plain C-ECHO and C-FIND as LX_WS1 from an address that reaches the port.
  CHECK(EchoAs(server.port(), "LX_WS1").exit_code != 0);
  CommandResult find = RunCommand({FINDSCU_BIN, "-S", "-aet", "LX_WS1", "-aec", "LX_READ", "-k",
                                   "QueryRetrieveLevel=STUDY", "-k", "PatientID", "127.0.0.1", server.port_text()});
  CHECK(find.exit_code != 0);
  CHECK_THAT(find.output, !Catch::Contains("PatientID") || Catch::Contains("Association Rejected"));
  // Over TLS: anonymous, another workstation's and a member's certificate are refused; its own opens it.
  CHECK(RunCommand({ECHOSCU_BIN, "-aet", "LX_WS1", "-aec", "LX_READ", "+tla", "+cf", (pki / "ca.pem").string(),
                    "127.0.0.1", std::to_string(server.tls_port())})
            .exit_code != 0);
  CHECK(EchoAs(server.tls_port(), "LX_WS1", pki, "LX_WS2").exit_code != 0);
  CHECK(EchoAs(server.tls_port(), "LX_WS1", pki, "LS_PACS").exit_code != 0);
  CommandResult own = EchoAs(server.tls_port(), "LX_WS1", pki, "LX_WS1");
  INFO(own.output << server.Log());
  CHECK(own.exit_code == 0);
  const std::string log = server.Log();
  CHECK_THAT(log, Catch::Contains("centre AE title LX_WS1 must present its workstation certificate"));
  CHECK_THAT(log, Catch::Contains("is not centre AE title LX_WS1's"));
}

TEST_CASE("attack 1: a plain centre AE title is allowed only from its named addresses, within its own limit",
          "[listener][concurrency][attack]") {
  ScratchDir dir;
  SECTION("from another address") {
    ServerOptions o;
    o.plain_centre_workstation = false;
    o.edits = {
        {"^\\[https\\]$", "[[centre.plain_callers]]\nae_title = \"LX_WS1\"\naddresses = [\"10.20.30.40\"]\n\n[https]"}};
    TestServer server(dir.path() / "server", o);
    server.Start();
    CHECK(EchoAs(server.port(), "LX_WS1").exit_code != 0);
    CHECK_THAT(server.Log(), Catch::Contains("no plain_callers entry for 127.0.0.1"));
  }
  SECTION("from its address, one association at a time") {
    ServerOptions o;
    o.edits = {{"^centre_max_associations = .*$", "centre_max_associations = 1"}};
    TestServer server(dir.path() / "server", o);
    server.Start();
    TestScu held(server.port(), "LX_WS1", {UID_CTImageStorage});
    REQUIRE(held.Connect() == "");
    CommandResult second = EchoAs(server.port(), "LX_WS1");
    CHECK(second.exit_code != 0);
    CHECK_THAT(second.output, Catch::Contains("Local Limit Exceeded"));
    CHECK(EchoAs(server.port(), "LS_PACS").exit_code == 0);  // members keep their own share
    CHECK_THAT(server.Log(), Catch::Contains("the centre's AE titles has its 1 associations open"));
    held.Release();
    CHECK(WaitUntil([&] { return EchoAs(server.port(), "LX_WS1").exit_code == 0; }, std::chrono::seconds(5)));
  }
}

TEST_CASE("attack 2: --check-config warns about every member anyone can call as", "[config][attack]") {
  ScratchDir dir;
  ServerOptions o;
  o.edits = {{R"(^allowed_addresses = \["127.0.0.1"\]\n)", ""}};  // Zhuozhou's, with require_tls = false
  WriteFile(dir.path() / "t.toml", TestConfigText(o));
  CommandResult r = RunCommand({TELEREAD_SERVER_BIN, "--config", (dir.path() / "t.toml").string(), "--check-config"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Catch::Contains("warning: anyone who reaches the DICOM port can call as member zhuozhou"));
  CHECK_THAT(r.output, !Catch::Contains("member laishui") && !Catch::Contains("member yixian"));
  // The sample config as shipped leaves no member open.
  CommandResult sample =
      RunCommand({TELEREAD_SERVER_BIN, "--config",
                  (fs::path(TELEREAD_SOURCE_DIR) / "config" / "teleread.toml").string(), "--check-config"});
  CHECK(sample.exit_code == 0);
  CHECK_THAT(sample.output, !Catch::Contains("can call as member"));
}

TEST_CASE(
    "attack 11: the retired AES profile is refused unless a member opts in with legacy_tls, and is logged as weak",
    "[tls][attack]") {
  ScratchDir dir;
  const fs::path pki = dir.path() / "server" / "pki";
  auto legacy_echo = [&](const TestServer& server, const std::string& ae) {
    return RunCommand({ECHOSCU_BIN, "-aet", ae, "-aec", "LX_READ", "+tla", "+pa", "+cf", (pki / "ca.pem").string(),
                       "127.0.0.1", std::to_string(server.tls_port())},
                      std::chrono::seconds(30));
  };
  SECTION("off by default: no shared cipher") {
    ServerOptions o;
    o.edits = {{"^\\[reading\\]$", DicomTlsTable(pki, "port = 0")}};
    TestServer server(dir.path() / "server", o);
    server.Start();
    CHECK(legacy_echo(server, "ZZ_PACS").exit_code != 0);
    CHECK_THAT(server.Log(), !Catch::Contains("retired AES profile"));
  }
  SECTION("opted in by Zhuozhou only") {
    ServerOptions o;
    std::string table = DicomTlsTable(pki, "port = 0");
    table.insert(table.find("\n[reading]"), "legacy_certificate = \"" + (pki / "teleread-server-rsa.pem").string() +
                                                "\"\nlegacy_key = \"" + (pki / "teleread-server-rsa.key").string() +
                                                "\"\n");
    o.edits = {{"^\\[reading\\]$", table}, {"^legacy_tls = false$", "legacy_tls = true"}};
    TestServer server(dir.path() / "server", o);
    CommandResult rsa = RunCommand({TELEREAD_SERVER_BIN, "pki", "issue", pki.string(), "--kind", "server", "--rsa",
                                    "--name", "teleread-server-rsa"});
    REQUIRE(rsa.exit_code == 0);
    server.Start();
    CommandResult zz = legacy_echo(server, "ZZ_PACS");
    INFO(zz.output << server.Log());
    CHECK(zz.exit_code == 0);
    CHECK(legacy_echo(server, "LS_PACS").exit_code != 0);
    // Everyone else still gets BCP 195.
    CHECK(RunCommand({ECHOSCU_BIN, "-aet", "LS_PACS", "-aec", "LX_READ", "+tla", "+cf", (pki / "ca.pem").string(),
                      "127.0.0.1", std::to_string(server.tls_port())})
              .exit_code == 0);
    const std::string log = server.Log();
    CHECK_THAT(log,
               Catch::Contains("the retired AES profile (TLS_RSA_WITH_AES_128_CBC_SHA, no forward secrecy) is WEAK"));
    CHECK_THAT(log,
               Catch::Contains("association ZZ_PACS from 127.0.0.1 uses the retired AES profile (TLSv1.2 AES128-SHA)"));
    CHECK_THAT(log, Catch::Contains("only for members with legacy_tls"));
  }
}

namespace {

long PeakRssKb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

}  // namespace

TEST_CASE("attack 7: a 200 MB object re-sent in another encoding is compared with bounded memory",
          "[listener][concurrency][attack]") {
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  server.Start();
  // A sample CT slice grown to 400 frames of 512 x 512 x 16 bits: 200 MiB of pixel data.
  const fs::path samples = WriteSampleConsortium(dir.path() / "samples", 1);
  fs::path slice;
  for (const auto& e : fs::recursive_directory_iterator(samples / "ZZ_PACS")) {
    if (e.is_regular_file()) slice = e.path();
  }
  const fs::path explicit_file = dir.path() / "big-explicit.dcm", implicit_file = dir.path() / "big-implicit.dcm";
  {
    DcmFileFormat ff;
    REQUIRE(ff.loadFile(slice.c_str()).good());
    DcmDataset* ds = ff.getDataset();
    ds->putAndInsertUint16(DCM_Rows, 512);
    ds->putAndInsertUint16(DCM_Columns, 512);
    ds->putAndInsertUint16(DCM_BitsAllocated, 16);
    ds->putAndInsertOFStringArray(DCM_NumberOfFrames, "400");
    std::vector<Uint16> pixels(size_t{512} * 512 * 400);
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<Uint16>(i * 7);
    REQUIRE(
        ds->putAndInsertUint16Array(DCM_PixelData, pixels.data(), static_cast<unsigned long>(pixels.size())).good());
    REQUIRE(ff.saveFile(explicit_file.c_str(), EXS_LittleEndianExplicit).good());
  }
  REQUIRE(
      RunCommand({"/usr/bin/dcmconv", "+ti", explicit_file.string(), implicit_file.string()}, std::chrono::seconds(120))
          .exit_code == 0);
  CommandResult first = StoreFiles(server, "ZZ_PACS", {explicit_file.string()});
  INFO(first.output);
  REQUIRE(first.exit_code == 0);
  CommandResult again = StoreFiles(server, "ZZ_PACS", {implicit_file.string()}, {"-xi"});  // implicit VR only
  const long peak = PeakRssKb(server.pid());
  INFO(again.output << "\nserver peak RSS " << peak << " kB");
  CHECK(again.exit_code == 0);  // the same object: acknowledged, the stored copy kept
  // AddressSanitizer's shadow memory and quarantine add ~100 MB to any server; the bound under
  // it still tells streaming (~160 MB there) from loading the 200 MB object (~640 MB).
#if TELEREAD_ASAN
  CHECK(peak < 256 * 1024);
#else
  CHECK(peak < 64 * 1024);
#endif
  CHECK(IndexedPaths(server.storage()).size() == 1);
  CHECK_THAT(server.Log(), !Catch::Contains("different content"));
}
