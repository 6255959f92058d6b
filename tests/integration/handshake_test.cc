// Connections that never become associations: peers that say nothing or half an A-ASSOCIATE-RQ
// (dropped at the ACSE timeout, their workers freed), and a burst of TLS connections the
// listener must refuse at once (each refused, counted, audited, nothing kept open, the server
// serving on).
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcuid.h"

#include "tests/support/scu.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

TEST_CASE("connections that send nothing or half an A-ASSOCIATE-RQ are dropped at the ACSE timeout, freeing workers",
          "[listener][acse]") {
  constexpr int kAcseSeconds = 5;
  ScratchDir dir;
  ServerOptions o;
  o.max_associations = 2;
  o.edits = {{"^acse_timeout_seconds = .*$", "acse_timeout_seconds = " + std::to_string(kAcseSeconds)}};
  TestServer server(dir.path() / "server", o);
  server.Start();
  const auto start = std::chrono::steady_clock::now();
  const int silent = ConnectTcp(server.port());
  const int half = ConnectTcp(server.port());
  // The first 10 bytes of a 211-byte A-ASSOCIATE-RQ: PDU type, length, protocol version.
  const unsigned char head[] = {0x01, 0x00, 0x00, 0x00, 0x00, 0xCD, 0x00, 0x01, 0x00, 0x00};
  REQUIRE(::send(half, head, sizeof head, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof head));

  // They hold both workers: an association behind them in the accept queue is refused as busy.
  CommandResult busy = Echo(server, "ZZ_PACS");
  CHECK(busy.exit_code != 0);
  CHECK_THAT(busy.output, Catch::Contains("Local Limit Exceeded"));

  // Each is closed without an answer, and not before the ACSE timeout (a lower bound only).
  CHECK(PeerClosed(silent, 60));
  CHECK(PeerClosed(half, 60));
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::seconds(kAcseSeconds));
  ::close(silent);
  ::close(half);

  // Both workers are free again: two associations at once. A worker closes the socket a moment
  // before it is idle again, hence the wait.
  auto two_at_once = [&] {
    TestScu zz(server.port(), "ZZ_PACS", {UID_CTImageStorage});
    TestScu ls(server.port(), "LS_PACS", {UID_CTImageStorage});
    const bool both = zz.Connect().empty() && ls.Connect().empty();
    zz.Release();
    ls.Release();
    return both;
  };
  CHECK(WaitFor(two_at_once, 30));
  CHECK(server.Stop() == 0);
}

TEST_CASE("TLS connections refused at the same time are each refused, counted and closed, and the server serves on",
          "[tls][concurrency]") {
  ScratchDir dir;
  const fs::path pki = dir.path() / "server" / "pki";
  const fs::path crl = pki / "crl.pem";
  ServerOptions o;
  o.edits = {{"^\\[reading\\]$", DicomTlsTable(pki, "port = 0\ncrl = \"" + crl.string() + "\"")}};
  TestServer server(dir.path() / "server", o);
  IssueCert(pki, "member", "zhuozhou");
  IssueCert(pki, "member", "laishui");
  REQUIRE(RunCommand({TELEREAD_SERVER_BIN, "pki", "crl", pki.string(), "--revoke", "laishui"}).exit_code == 0);
  const fs::path rogue = dir.path() / "rogue";  // the same name from a CA the centre never saw
  REQUIRE(RunCommand({TELEREAD_SERVER_BIN, "pki", "init", rogue.string()}).exit_code == 0);
  IssueCert(rogue, "member", "zhuozhou");
  server.Start();
  const fs::path samples = WriteSampleConsortium(dir.path() / "samples", 1);
  const fs::path zz = SampleOf(samples, "ZZ_PACS"), ls = SampleOf(samples, "LS_PACS");
  const fs::path ca = pki / "ca.pem";
  REQUIRE(Echo(server, "YX_PACS").exit_code == 0);  // warm: every file the server keeps is open
  const std::multiset<std::string> fds_before = OpenFiles(server.pid());

  // Two of each kind, all at once: a foreign CA, a revoked certificate, plain TCP on the TLS
  // port, and a member's certificate calling as another member.
  struct Attempt {
    std::string ae;
    std::vector<std::string> tls;
    fs::path file;
    CommandResult result;
  };
  std::vector<Attempt> attempts;
  for (int i = 0; i < 2; ++i) {
    attempts.push_back({"ZZ_PACS", TlsArgs(rogue, "zhuozhou", ca), zz, {}});
    attempts.push_back({"LS_PACS", TlsArgs(pki, "laishui", ca), ls, {}});
    attempts.push_back({"LS_PACS", {}, ls, {}});
    attempts.push_back({"LS_PACS", TlsArgs(pki, "zhuozhou", ca), ls, {}});
  }
  std::vector<std::thread> threads;
  for (Attempt& a : attempts) {
    threads.emplace_back([&a, &server] { a.result = StoreTo(server.tls_port(), a.ae, {a.file.string()}, a.tls); });
  }
  for (std::thread& t : threads) t.join();
  for (const Attempt& a : attempts) {
    INFO(a.ae << " " << (a.tls.empty() ? "plain" : a.tls[2]) << ": " << a.result.output);
    CHECK(NotAssociated(a.result));
  }
  const int n = static_cast<int>(attempts.size());
  CHECK(WaitFor([&] { return Metric(server, "teleread_dicom_tls_refused_total") >= n; }, 30));
  CHECK(Metric(server, "teleread_dicom_tls_refused_total") == n);
  CHECK(Metric(server, "teleread_dicom_tls_associations_total") == 0);
  const std::string log = server.Log();
  CHECK(CountOccurrences(log, "certificate revoked") == 2);
  CHECK(CountOccurrences(log, "not a TLS handshake, and this port takes TLS only") == 2);
  CHECK(CountOccurrences(log, "is not member laishui's") == 2);
  CHECK(CountOccurrences(log, "TLS connection from 127.0.0.1 refused") == 4);  // the CA and the revocation
  CHECK(IndexedPaths(server.storage()).empty());
  // Audited once for the address within the minute (the rest are counted into its next entry).
  const std::vector<AuditRow> audited = AuditTrail(server.storage(), "refused");
  REQUIRE(audited.size() == 1);
  CHECK(audited[0].actor == "DICOM TLS peer 127.0.0.1");
  // Nothing of theirs is left open, and members are served as before.
  CHECK(WaitFor([&] { return OpenFiles(server.pid()) == fds_before; }, 30));
  CommandResult ok = StoreTo(server.tls_port(), "ZZ_PACS", {zz.string()}, TlsArgs(pki, "zhuozhou", ca));
  INFO(ok.output);
  CHECK(Stored(ok));
  CHECK(Metric(server, "teleread_dicom_tls_associations_total") == 1);
  CHECK(Echo(server, "YX_PACS").exit_code == 0);
  CHECK(server.Stop() == 0);  // a clean exit: under ASan, nothing leaked
}
