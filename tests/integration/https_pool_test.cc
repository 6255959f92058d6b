// A request whose handler waits (on SQLite, a group commit, a signature check) must not hold up
// other connections: the HTTPS server runs handlers off its TLS I/O threads.
#include <catch2/catch.hpp>

#include <condition_variable>
#include <future>
#include <mutex>

#include "server/http/https_server.h"
#include "server/pki/pki.h"
#include "tests/support/process.h"

using namespace teleread;
using namespace teleread::test;

TEST_CASE("a waiting handler does not stall other connections on a single I/O thread", "[https][pool]") {
  ScratchDir dir;
  const std::filesystem::path pki = dir.path() / "pki";
  REQUIRE(InitCertificateAuthority(pki, "Pool Test").ok());
  REQUIRE(IssueCertificate(pki, {CertKind::kServer, "server", "Pool Test", {"localhost"}, {"127.0.0.1"}}).ok());
  REQUIRE(IssueCertificate(pki, {CertKind::kRadiologist, "reader", "Pool Test", {}, {}}).ok());

  std::mutex mu;
  std::condition_variable cv;
  bool released = false;      // guarded by mu
  bool slow_entered = false;  // guarded by mu
  HttpsConfig config;
  config.enabled = true;
  config.certificate = pki / "server.pem";
  config.key = pki / "server.key";
  config.ca = pki / "ca.pem";
  config.threads = 1;  // one I/O thread: a handler run on it would block every connection
  HttpsServer server(config, [&](const HttpRequest& r, const PeerCertificate&) {
    HttpResponse out;
    if (r.target == "/slow") {
      std::unique_lock<std::mutex> lock(mu);
      slow_entered = true;
      cv.notify_all();
      cv.wait(lock, [&] { return released; });
    }
    out.body = r.target;
    return out;
  });
  REQUIRE(server.Start(0).ok());
  const std::string base = "https://127.0.0.1:" + std::to_string(server.port());
  auto curl = [&](const std::string& path) {
    return RunCommand({"/usr/bin/curl", "-sS", "--max-time", "60", "--cacert", (pki / "ca.pem").string(), "--cert",
                       (pki / "reader.pem").string(), "--key", (pki / "reader.key").string(), base + path});
  };

  auto slow = std::async(std::launch::async, [&] { return curl("/slow"); });
  {
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return slow_entered; }));
  }
  // The fast request is answered while /slow's handler still waits; /slow is released only
  // afterwards, so with handlers on the I/O thread this request would time out.
  CommandResult fast = curl("/fast");
  {
    std::lock_guard<std::mutex> lock(mu);
    released = true;
  }
  cv.notify_all();
  CHECK(fast.exit_code == 0);
  CHECK(fast.output == "/fast");
  CommandResult slow_result = slow.get();
  CHECK(slow_result.exit_code == 0);
  CHECK(slow_result.output == "/slow");
  server.Stop();
}

TEST_CASE("a gate's refusal that waits (an audit commit) runs off the single I/O thread and is still answered",
          "[https][pool]") {
  ScratchDir dir;
  const std::filesystem::path pki = dir.path() / "pki";
  REQUIRE(InitCertificateAuthority(pki, "Pool Test").ok());
  REQUIRE(IssueCertificate(pki, {CertKind::kServer, "server", "Pool Test", {"localhost"}, {"127.0.0.1"}}).ok());
  REQUIRE(IssueCertificate(pki, {CertKind::kRadiologist, "reader", "Pool Test", {}, {}}).ok());

  std::mutex mu;
  std::condition_variable cv;
  bool released = false;  // guarded by mu
  bool refusing = false;  // guarded by mu
  HttpsConfig config;
  config.enabled = true;
  config.certificate = pki / "server.pem";
  config.key = pki / "server.key";
  config.ca = pki / "ca.pem";
  config.threads = 1;  // one I/O thread: a refusal waiting on it would block every connection
  HttpsServer server(
      config,
      [](const HttpRequest& r, const PeerCertificate&) {
        return HttpResponse{200, "text/plain", r.target, {}, {}};
      },
      [&](const HttpRequest& head, const PeerCertificate&, uint64_t&) -> std::optional<HttpResponse> {
        if (head.target != "/refused") return std::nullopt;
        HttpResponse r;
        r.deferred = [&] {
          // As ReadingApi's refusal of a certificate that stands for nobody: it waits for its audit.
          std::unique_lock<std::mutex> lock(mu);
          refusing = true;
          cv.notify_all();
          cv.wait_for(lock, std::chrono::seconds(30), [&] { return released; });
          return HttpResponse{403, "text/plain", "refused and audited", {}, {}};
        };
        return r;
      });
  REQUIRE(server.Start(0).ok());
  const std::string base = "https://127.0.0.1:" + std::to_string(server.port());
  auto curl = [&](const std::string& path) {
    return RunCommand({"/usr/bin/curl", "-sS", "--max-time", "20", "-w", "\n%{http_code}", "--cacert",
                       (pki / "ca.pem").string(), "--cert", (pki / "reader.pem").string(), "--key",
                       (pki / "reader.key").string(), base + path});
  };

  auto refused = std::async(std::launch::async, [&] { return curl("/refused"); });
  {
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return refusing; }));
  }
  // Served while the refusal still waits; with the refusal made on the I/O thread this request
  // would wait out the refusal's 30 s and curl's 20 s would run out first.
  CommandResult other = curl("/other");
  {
    std::lock_guard<std::mutex> lock(mu);
    released = true;
  }
  cv.notify_all();
  CHECK(other.exit_code == 0);
  CHECK(other.output == "/other\n200");
  CommandResult refused_result = refused.get();
  CHECK(refused_result.exit_code == 0);
  CHECK(refused_result.output == "refused and audited\n403");
  server.Stop();
}
