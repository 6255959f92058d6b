// The attack suite of issue 19 against the HTTPS side: bodies from callers who may not send
// them, revoked certificates on live sessions, TLS resumption, the audit trail, archives that
// cannot complete, and idle connections by the thousand.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <regex>
#include <thread>

#include "tests/support/process.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

bool WaitUntil(const std::function<bool()>& done, std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

void Pki(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {TELEREAD_SERVER_BIN, "pki"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = RunCommand(argv);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
}

// The server's peak resident set (VmHWM), in kB.
long PeakRssKb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

int ConnectLoopback(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A keep-alive HTTPS client with a client certificate, straight on OpenSSL, so that the test
// controls when each request goes out on the one connection, and which session is resumed.
class TlsClient {
 public:
  TlsClient(const fs::path& pki, const std::string& who, int max_version = 0) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (max_version) SSL_CTX_set_max_proto_version(ctx_, max_version);
    SSL_CTX_load_verify_locations(ctx_, (pki / "ca.pem").c_str(), nullptr);
    SSL_CTX_use_certificate_file(ctx_, (pki / (who + ".pem")).c_str(), SSL_FILETYPE_PEM);
    SSL_CTX_use_PrivateKey_file(ctx_, (pki / (who + ".key")).c_str(), SSL_FILETYPE_PEM);
  }
  ~TlsClient() {
    Close();
    if (session_) SSL_SESSION_free(session_);
    SSL_CTX_free(ctx_);
  }
  // A new connection, resuming the last session when there is one.
  bool Connect(uint16_t port) {
    Close();
    fd_ = ConnectLoopback(port);
    if (fd_ < 0) return false;
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    if (session_) SSL_set_session(ssl_, session_);
    return SSL_connect(ssl_) == 1;
  }
  bool reused() const { return ssl_ && SSL_session_reused(ssl_) == 1; }
  // One GET on this connection; the status, 0 when the connection ended first.
  int Get(const std::string& path) {
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    if (SSL_write(ssl_, req.data(), static_cast<int>(req.size())) <= 0) return 0;
    std::string in;
    char buf[4096];
    size_t body_at = std::string::npos, need = 0;
    for (;;) {
      if (body_at != std::string::npos && in.size() >= body_at + need) break;
      const int n = SSL_read(ssl_, buf, sizeof buf);
      if (n <= 0) return 0;
      in.append(buf, static_cast<size_t>(n));
      if (body_at == std::string::npos && (body_at = in.find("\r\n\r\n")) != std::string::npos) {
        body_at += 4;
        std::smatch m;
        const std::string head = in.substr(0, body_at);
        if (std::regex_search(head, m, std::regex("[Cc]ontent-[Ll]ength: (\\d+)"))) need = std::stoul(m[1]);
      }
    }
    if (session_) SSL_SESSION_free(session_);
    session_ = SSL_get1_session(ssl_);  // TLS 1.3 tickets arrive after the handshake
    return std::atoi(in.substr(9, 3).c_str());
  }
  void Close() {
    if (ssl_) {
      SSL_shutdown(ssl_);
      SSL_free(ssl_);
      ssl_ = nullptr;
    }
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  SSL_SESSION* session_ = nullptr;
  int fd_ = -1;
};

CommandResult Audit(const TestServer& server, const std::string& what) {
  return RunCommand({TELEREAD_SERVER_BIN, "--config", server.config_path().string(), "--storage",
                     server.storage().string(), "audit", what});
}

// A server with the sample consortium pushed and its studies queued for reading.
std::string FirstStudy(const TestServer& server) {
  std::string uid;
  WaitUntil(
      [&] {
        HttpReply r = server.Call("wang.li", "GET", "/api/v1/worklist");
        if (r.status != 200 || r.Json()["items"].empty()) return false;
        uid = r.Json()["items"][0]["study_instance_uid"];
        return true;
      },
      std::chrono::seconds(20));
  REQUIRE_FALSE(uid.empty());
  return uid;
}

}  // namespace

TEST_CASE("attack 4: a 48 MB POST from a certificate that stands for nobody is refused unread", "[https][attack]") {
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  Pki({"issue", server.pki().string(), "--kind", "member", "--name", "stranger"});  // our CA, no member
  server.Start();
  const fs::path big = dir.path() / "big.bin";
  {
    std::ofstream out(big, std::ios::binary);
    std::string chunk(1 << 20, 'x');
    for (int i = 0; i < 48; ++i) out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  }
  REQUIRE(server.Call("wang.li", "GET", "/healthz").status == 200);
  const long before = PeakRssKb(server.pid());
  CommandResult r = server.Curl("stranger", "POST", "/api/v1/studies/1.2.3/reports",
                                {"-i", "-H", "Content-Type: application/dicom", "--data-binary", "@" + big.string()});
  const long after = PeakRssKb(server.pid());
  INFO(r.output << "\npeak RSS " << before << " kB -> " << after << " kB");
  CHECK_THAT(r.output, Catch::Contains("HTTP/1.1 403"));
  CHECK_THAT(r.output, Catch::Contains("Connection: close"));
  CHECK(after - before < 16 * 1024);
  // A radiologist's report body above the route's limit is refused from its header alone.
  CommandResult large =
      server.Curl("wang.li", "POST", "/api/v1/studies/1.2.3/reports",
                  {"-i", "-H", "Content-Type: application/dicom", "--data-binary", "@" + big.string()});
  CHECK_THAT(large.output, Catch::Contains("HTTP/1.1 413"));
  CHECK(PeakRssKb(server.pid()) - before < 16 * 1024);
  // An admin may not send a report at all: refused before the body too.
  CHECK(server.Call("ops", "POST", "/api/v1/studies/1.2.3/reports", {"--data-binary", "@" + big.string()}).status ==
        403);
  CHECK(server.Call("wang.li", "GET", "/api/v1/whoami").status == 200);
}

// A server that reads its revocation list from pki/crl.pem (empty at first), started.
struct RevocationServer {
  ScratchDir dir;
  fs::path pki = dir.path() / "server" / "pki";
  TestServer server{dir.path() / "server", Options(pki)};
  RevocationServer() {
    Pki({"crl", pki.string()});
    server.Start();
  }
  static ServerOptions Options(const fs::path& pki) {
    ServerOptions o;
    o.edits = {{"^# crl = \"../var/pki/crl.pem\"$", "crl = \"" + (pki / "crl.pem").string() + "\""}};
    return o;
  }
};

TEST_CASE("attack 5: revocation ends a live keep-alive session, and sessions resume with their certificate",
          "[https][tls][attack]") {
  RevocationServer revocation;
  const fs::path& pki = revocation.pki;
  TestServer& server = revocation.server;

  // Resumption (finding 6): TLS 1.2 session ids and TLS 1.3 tickets both resume, and the
  // resumed session is still wang.li's.
  for (int version : {TLS1_2_VERSION, 0}) {
    TlsClient c(pki, "wang.li", version);
    REQUIRE(c.Connect(server.https_port()));
    REQUIRE(c.Get("/api/v1/whoami") == 200);
    REQUIRE(c.Connect(server.https_port()));
    CHECK(c.reused());
    CHECK(c.Get("/api/v1/whoami") == 200);
  }
  // curl, two URLs, a new connection for each: the second resumes and succeeds.
  CommandResult two = RunCommand({"/usr/bin/curl",
                                  "-sS",
                                  "--max-time",
                                  "30",
                                  "--cacert",
                                  (pki / "ca.pem").string(),
                                  "--cert",
                                  (pki / "wang.li.pem").string(),
                                  "--key",
                                  (pki / "wang.li.key").string(),
                                  "-H",
                                  "Connection: close",
                                  "-w",
                                  "%{http_code}\n",
                                  "-o",
                                  "/dev/null",
                                  "https://127.0.0.1:" + std::to_string(server.https_port()) + "/api/v1/whoami",
                                  "-o",
                                  "/dev/null",
                                  "https://127.0.0.1:" + std::to_string(server.https_port()) + "/healthz"});
  INFO(two.output);
  CHECK(two.exit_code == 0);
  CHECK(two.output == "200\n200\n");

  // Finding 10: CBC with SHA-1 no longer negotiates on HTTPS; BCP 195's AEAD suites do.
  auto curl_cipher = [&](const std::string& cipher) {
    return RunCommand({"/usr/bin/curl", "-sS", "--max-time", "30", "--tls-max", "1.2", "--ciphers", cipher, "--cacert",
                       (pki / "ca.pem").string(), "--cert", (pki / "wang.li.pem").string(), "--key",
                       (pki / "wang.li.key").string(), "-o", "/dev/null", "-w", "%{http_code}",
                       "https://127.0.0.1:" + std::to_string(server.https_port()) + "/healthz"});
  };
  CHECK(curl_cipher("ECDHE-ECDSA-AES128-SHA").exit_code != 0);
  CHECK(curl_cipher("ECDHE-ECDSA-AES128-GCM-SHA256").output == "200");

  // A keep-alive session open before the revocation ends with the next request after the re-read.
  TlsClient live(pki, "wang.li");
  REQUIRE(live.Connect(server.https_port()));
  REQUIRE(live.Get("/api/v1/whoami") == 200);
  Pki({"crl", pki.string(), "--revoke", "wang.li"});
  REQUIRE(WaitUntil([&] { return server.Log().find("re-read: now in use") != std::string::npos; },
                    std::chrono::seconds(30)));
  const int after = live.Get("/api/v1/whoami");
  CHECK((after == 401 || after == 0));
  CHECK(live.Get("/api/v1/whoami") == 0);  // and the connection is closed
  // Resuming the revoked certificate's session opens nothing either.
  TlsClient resumed(pki, "wang.li");
  if (resumed.Connect(server.https_port())) {
    CHECK(resumed.Get("/api/v1/whoami") != 200);
  }
  CHECK_THAT(server.Log(), Catch::Contains("HTTPS session of 'CN=wang.li"));
  CHECK(server.Call("zhao.min", "GET", "/api/v1/whoami").status == 200);
}

TEST_CASE("revocation ends a busy keep-alive session with its first request after the new list is read",
          "[https][tls][attack]") {
  RevocationServer revocation;
  const fs::path& pki = revocation.pki;
  TestServer& server = revocation.server;
  // Each connection's certificate check is remembered for up to a second: a new list must end
  // that at once, so this session asks every 100 ms (WaitUntil's pace), its check never a second old.
  TlsClient live(pki, "wang.li");
  REQUIRE(live.Connect(server.https_port()));
  REQUIRE(live.Get("/api/v1/whoami") == 200);
  Pki({"crl", pki.string(), "--revoke", "wang.li"});
  int status = 200;
  WaitUntil(
      [&] {
        if (status == 200) status = live.Get("/api/v1/whoami");
        return status != 200 || server.Log().find("re-read: now in use") != std::string::npos;
      },
      std::chrono::seconds(30));
  // A refusal may come before the line is written: wait for it either way.
  REQUIRE(WaitUntil([&] { return server.Log().find("re-read: now in use") != std::string::npos; },
                    std::chrono::seconds(30)));
  if (status == 200) status = live.Get("/api/v1/whoami");
  CHECK((status == 401 || status == 0));
  CHECK(live.Get("/api/v1/whoami") == 0);  // and the connection is closed
}

TEST_CASE("attack 8: the audit trail is a hash chain that shows any change, and fails closed", "[https][attack]") {
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  Pki({"issue", server.pki().string(), "--kind", "member", "--name", "stranger"});
  server.Start();
  PushSampleConsortium(server, dir.path() / "samples", 2);
  const std::string study = FirstStudy(server);
  REQUIRE(server.Call("wang.li", "GET", "/api/v1/studies/" + study).status == 200);
  REQUIRE(server.Call("wang.li", "GET", "/api/v1/studies/" + study + "/priors").status == 200);
  // Twenty refusals of one certificate: one entry now, the count with the next one later.
  for (int i = 0; i < 20; ++i) CHECK(server.Call("stranger", "GET", "/api/v1/worklist").status == 403);
  CHECK(Sql(server.storage(), "SELECT count(*) FROM audit_log WHERE action = 'refused';") == "1\n");
  CHECK(Sql(server.storage(), "SELECT count(*) FROM audit_log WHERE action = 'view-priors';") == "1\n");
  // Queries over DICOM are audited too.
  const std::vector<std::string> find = {FINDSCU_BIN, "-S",        "-aet",      "ZZ_PACS",
                                         "-aec",      "LX_READ",   "-k",        "QueryRetrieveLevel=STUDY",
                                         "-k",        "PatientID", "127.0.0.1", server.port_text()};
  REQUIRE(RunCommand(find).exit_code == 0);
  CHECK(Sql(server.storage(), "SELECT count(*) FROM audit_log WHERE action = 'C-FIND' AND actor = 'zhuozhou';") ==
        "1\n");

  CommandResult intact = Audit(server, "verify");
  INFO(intact.output);
  CHECK(intact.exit_code == 0);
  CHECK_THAT(intact.output, Catch::Contains("audit trail intact"));
  CommandResult exported = Audit(server, "export");
  CHECK(exported.exit_code == 0);
  const std::string entries = Sql(server.storage(), "SELECT count(*) FROM audit_log;");
  CHECK(std::to_string(std::count(exported.output.begin(), exported.output.end(), '\n')) + "\n" == entries);
  CHECK_THAT(exported.output, Catch::Contains("\"EventID\":\"view-priors\""));

  // Fail closed: with audit entries refused by the database, no patient data leaves.
  RefuseAuditEntries(server.storage());
  CHECK(server.Call("wang.li", "GET", "/api/v1/studies/" + study).status == 503);
  CHECK(server.Call("wang.li", "GET", "/api/v1/studies/" + study + "/priors").status == 503);
  // A claim answers with the task row and is a change: neither stands without its entry.
  const HttpReply claim = server.Call("wang.li", "POST", "/api/v1/studies/" + study + "/claim");
  CHECK(claim.status == 503);
  CHECK_THAT(claim.body, Catch::Contains("audit trail cannot be written"));
  CHECK(Sql(server.storage(),
            "SELECT t.state || '|' || t.claimed_by FROM reading_tasks t JOIN studies s ON "
            "s.id = t.study_pk WHERE s.study_instance_uid = '" +
                study + "';") == "waiting|\n");
  CommandResult unaudited = RunCommand(find);
  CHECK_THAT(unaudited.output, !Catch::Contains("(Pending)"));
  AllowAuditEntries(server.storage());
  CHECK(server.Stop() == 0);

  // The review's tampering: a changed actor, then a removed row, each named by verify.
  const std::string victim = Sql(server.storage(), "SELECT min(id) + 1 FROM audit_log;");
  Sql(server.storage(), "UPDATE audit_log SET actor = 'nobody' WHERE id = " + victim + ";");
  CommandResult changed = Audit(server, "verify");
  CHECK(changed.exit_code == 1);
  CHECK_THAT(changed.output, Catch::Contains("BROKEN at entry " + victim.substr(0, victim.size() - 1)));
  Sql(server.storage(), "UPDATE audit_log SET actor = (SELECT actor FROM audit_log WHERE id = " + victim +
                            " - 1) WHERE id = " + victim + ";");
  const std::string last = Sql(server.storage(), "SELECT max(id) - 1 FROM audit_log;");
  Sql(server.storage(), "DELETE FROM audit_log WHERE id = " + last + ";");
  CommandResult removed = Audit(server, "verify");
  CHECK(removed.exit_code == 1);
  CHECK_THAT(removed.output, Catch::Contains("does not follow"));
}

TEST_CASE("attack 9: an archive whose object file is missing is aborted, not a short tar with 200", "[https][attack]") {
  ScratchDir dir;
  ServerOptions options;
  options.segment_mb = 0;  // files of their own, which can go missing alone
  TestServer server(dir.path() / "server", options);
  server.Start();
  PushSampleConsortium(server, dir.path() / "samples", 4);
  const std::string study = FirstStudy(server);
  const std::string path = Sql(server.storage(),
                               "SELECT i.path FROM instances i JOIN series s ON s.id = i.series_pk JOIN studies t ON "
                               "t.id = s.study_pk WHERE t.study_instance_uid = '" +
                                   study + "' ORDER BY i.id DESC LIMIT 1;");
  REQUIRE(fs::remove(server.storage() / path.substr(0, path.size() - 1)));
  CommandResult r = server.Curl("wang.li", "GET", "/api/v1/studies/" + study + "/archive", {"-o", "/dev/null"});
  INFO(r.output);
  CHECK(r.exit_code != 0);  // curl: the transfer broke
  CHECK_THAT(server.Log(), Catch::Contains("aborted") && Catch::Contains("connection reset"));
  CHECK_THAT(server.Call("ops", "GET", "/metrics").body, Catch::Contains("teleread_https_archives_aborted_total 1"));
}

TEST_CASE("attack 3: 1,000 idle connections under ulimit -n 256 end nothing, and C-ECHO and /healthz answer",
          "[https][concurrency][attack]") {
  ScratchDir dir;
  TestServer server(dir.path() / "server");
  server.Start();
  CommandResult limited = RunCommand({"/usr/bin/prlimit", "--pid", std::to_string(server.pid()), "--nofile=256:256"});
  INFO(limited.output);
  REQUIRE(limited.exit_code == 0);
  // This process holds the thousand ends: raise its own soft limit.
  rlimit mine{};
  ::getrlimit(RLIMIT_NOFILE, &mine);
  if (mine.rlim_cur < 2200 && mine.rlim_max >= 2200) {
    mine.rlim_cur = 2200;
    ::setrlimit(RLIMIT_NOFILE, &mine);
  }
  REQUIRE(mine.rlim_cur >= 2200);
  std::vector<int> idle;
  for (int i = 0; i < 1000; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(i % 2 ? server.port() : server.https_port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);  // in progress is fine
    idle.push_back(fd);
  }
  // While all thousand are open, the server answers (each shed idle connection frees room).
  CHECK(WaitUntil([&] { return Echo(server, "LS_PACS").exit_code == 0; }, std::chrono::seconds(60)));
  CHECK(WaitUntil([&] { return server.Call("wang.li", "GET", "/healthz").status == 200; }, std::chrono::seconds(60)));
  CHECK(server.running());
  for (int fd : idle) ::close(fd);
  // Recovered: everything works, the outbox and promoter threads are alive, nothing terminated.
  CHECK(WaitUntil([&] { return Echo(server, "ZZ_PACS").exit_code == 0; }, std::chrono::seconds(30)));
  CHECK(server.Call("wang.li", "GET", "/api/v1/worklist").status == 200);
  const std::string log = server.Log();
  CHECK_THAT(log, !Catch::Contains("terminate called"));
  CHECK(server.Stop() == 0);
}
