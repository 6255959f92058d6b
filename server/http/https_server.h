#pragma once
// The HTTPS transport of the reading API: Boost.Beast over OpenSSL, asynchronous on a small
// thread pool with a strand per connection, keep-alive, bounded headers and bodies, and read and
// idle timeouts. Mutual TLS: a client without a certificate issued by the centre CA fails the
// handshake; the gate decides from the headers what a valid certificate may send, the handler
// what it may do. The certificate is checked again before every request (revocation, expiry).
// Connections are capped in total and per address; sessions resume (TLS 1.2 ids, TLS 1.3
// tickets) only for the client certificate they were made with.
//
// Thread-safety: Start and Stop from one thread; the handler is called from pool threads.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "server/store/object_store.h"

namespace teleread {

struct PeerCertificate {
  std::string subject;  // RFC 2253
  std::string common_name;
  std::string organizational_unit;
};

struct HttpRequest {
  std::string method;
  std::string target;  // path and query
  std::string body;
  std::string content_type;
  std::string accept_encoding = {};  // the Accept-Encoding header, as sent
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::filesystem::path file;  // when set, streamed from disk instead of body (a range of it: `object`'s)
  // When set, a ustar archive of these stored objects (name in archive, path recorded in the
  // index), opened one at a time through `objects` and streamed in chunks as they are read: a
  // whole study in one request without a copy on disk or in memory.
  std::vector<std::pair<std::string, std::string>> tar;
  // (The `= {}` let aggregate initialisations leave these out without a warning.)
  const ObjectStore* objects = {};            // for `tar`; outlives the response
  std::shared_ptr<ObjectHandle> object = {};  // keeps `file` readable (an object held in the index) until opened
  // Only in a gate's refusal: the answer is made by this, run on the handler pool (it may wait,
  // on an audit commit say), and sent instead; the TLS I/O thread does not wait for it.
  std::function<HttpResponse()> deferred = {};
  std::string content_encoding = {};  // "gzip": `body` is gzip, asked for by the request's Accept-Encoding
  std::string vary = {};              // the Vary header: the request headers the answer depends on
};

// A gate's refusal whose answer `make` gives on the handler pool. Its own status and body are a
// placeholder that says it was sent unmade (500), never a refusal without the audit `make` writes.
inline HttpResponse DeferredResponse(std::function<HttpResponse()> make) {
  HttpResponse r;
  r.status = 500;
  r.body = R"({"error":"internal error: an answer was sent before it was made"})";
  r.deferred = std::move(make);
  return r;
}

// Largest request header accepted (larger: 413); bodies are bounded by HttpsConfig::max_body_bytes.
inline constexpr size_t kMaxHttpHeaderBytes = 16 * 1024;

using HttpHandler = std::function<HttpResponse(const HttpRequest&, const PeerCertificate&)>;

// Decides from the request line, headers and certificate alone (HttpRequest::body empty) whether
// the body may be read: nullopt admits it with at most `body_limit` bytes (preset to
// HttpsConfig::max_body_bytes); a response refuses it unread and the connection is closed. The gate
// runs on a TLS I/O thread: a refusal that must wait for something sets HttpResponse::deferred.
using HttpGate =
    std::function<std::optional<HttpResponse>(const HttpRequest& head, const PeerCertificate&, uint64_t& body_limit)>;

// Connection counts, for /metrics.
struct HttpsStats {
  std::atomic<uint64_t> connections_refused{0};  // over the global or per-address cap
  std::atomic<uint64_t> accept_errors{0};        // EMFILE, ENFILE...: the acceptor backed off
  std::atomic<uint64_t> sessions_ended{0};       // certificate revoked or expired mid-session
  std::atomic<uint64_t> archives_aborted{0};     // an archive that could not complete, reset
  std::string Metrics() const;
};

class HttpsServer {
 public:
  HttpsServer(const HttpsConfig& config, HttpHandler handler, HttpGate gate = nullptr);
  ~HttpsServer();
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  // `port` 0 picks a free port (tests); see port().
  Status Start(uint16_t port);
  void Stop();
  uint16_t port() const;
  // The TLS context (an SSL_CTX*), for revocation lists that change while it runs.
  void* ssl_context();
  const HttpsStats& stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace teleread
