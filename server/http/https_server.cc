#include "server/http/https_server.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/resource.h>

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "common/log.h"
#include "server/http/handler_pool.h"
#include "server/http/range_file.h"
#include "server/http/request_trace.h"
#include "server/http/tar_stream.h"
#include "server/pki/pki.h"
#include "server/pki/revocation.h"

namespace teleread {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

HttpResponse JsonResponse(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

constexpr const char* kBcp195Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384";

constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr auto kReadTimeout = std::chrono::seconds(30);
// Handlers mostly wait (SQLite's group commit, disk): one per workstation connection we expect
// at once lets simultaneous claims share one commit instead of queueing for the next.
constexpr int kHandlerThreads = 32;

// Open connections, in all and per address. A Ticket holds one place until destroyed.
class ConnectionCounts {
 public:
  class Ticket {
   public:
    Ticket(ConnectionCounts& counts, std::string address) : counts_(counts), address_(std::move(address)) {}
    ~Ticket() { counts_.Leave(address_); }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;

   private:
    ConnectionCounts& counts_;
    std::string address_;
  };

  void SetLimits(int total, int per_address) {
    total_limit_ = total;
    per_address_limit_ = per_address;
  }
  // nullptr when `address` or everyone is at the limit.
  std::unique_ptr<Ticket> TryEnter(const std::string& address) {
    std::lock_guard<std::mutex> lock(mu_);
    int& n = per_address_[address];
    if (total_ >= total_limit_ || n >= per_address_limit_) {
      if (n == 0) per_address_.erase(address);
      return nullptr;
    }
    ++n;
    ++total_;
    return std::make_unique<Ticket>(*this, address);
  }

 private:
  void Leave(const std::string& address) {
    std::lock_guard<std::mutex> lock(mu_);
    --total_;
    if (--per_address_[address] <= 0) per_address_.erase(address);
  }
  std::mutex mu_;
  int total_ = 0;                                // guarded by mu_
  std::map<std::string, int> per_address_;       // guarded by mu_
  int total_limit_ = 0, per_address_limit_ = 0;  // set before the first connection
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ssl::context& ctx, const HttpHandler& handler, HandlerPool& handlers,
          const HttpGate& gate, uint64_t body_limit, HttpsStats& stats,
          std::unique_ptr<ConnectionCounts::Ticket> ticket)
      : stream_(std::move(socket), ctx),
        handler_(handler),
        handlers_(handlers),
        gate_(gate),
        body_limit_(body_limit),
        stats_(stats),
        ticket_(std::move(ticket)) {}

  void Run() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->Handshake(); });
  }

 private:
  void Handshake() {
    beast::get_lowest_layer(stream_).expires_after(kHandshakeTimeout);
    stream_.async_handshake(ssl::stream_base::server, [self = shared_from_this()](beast::error_code ec) {
      if (ec) {
        spdlog::warn("HTTPS handshake from {} refused: {}", self->Peer(), ec.message());
        return;
      }
      self->peer_ = self->Certificate();
      self->Read();
    });
  }

  std::string Peer() {
    beast::error_code ec;
    auto ep = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
    return ec ? "?" : ep.address().to_string();
  }

  PeerCertificate Certificate() {
    PeerCertificate p;
    X509* cert = SSL_get_peer_certificate(stream_.native_handle());
    if (cert) {
      CertificateInfo info = DescribeCertificate(cert);
      p = {info.subject, info.common_name, info.organizational_unit};
      X509_free(cert);
    }
    return p;
  }

  // The headers first: whether a body is read at all, and how much, depends on who sends it.
  void Read() {
    trace_.reset();  // the last request's, logged or not: never logged under this one's answer
    parser_.emplace();
    parser_->header_limit(kMaxHttpHeaderBytes);
    parser_->body_limit(body_limit_);
    beast::get_lowest_layer(stream_).expires_after(first_request_ ? kReadTimeout : kIdleTimeout);
    http::async_read_header(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec == http::error::end_of_stream) return self->Close();
      if (ec) {
        // body_limit: the announced Content-Length is over max_body_mb, seen with the headers.
        if (ec == http::error::header_limit || ec == http::error::body_limit)
          return self->SendError(http::status::payload_too_large, "request too large");
        return;  // timeout or reset: nothing to answer
      }
      self->first_request_ = false;
      self->Admit();
    });
  }

  void Admit() {
    // A certificate revoked or expired since the handshake ends the session here.
    if (std::optional<std::string> problem = certificate_check_.Problem(stream_.native_handle())) {
      stats_.sessions_ended++;
      spdlog::warn("HTTPS session of '{}' from {} ended: {}", peer_.subject, Peer(), *problem);
      return SendError(http::status::unauthorized, "the client certificate is no longer valid: " + *problem);
    }
    const auto& head = parser_->get();
    uint64_t limit = body_limit_;
    if (gate_) {
      HttpRequest r{std::string(head.method_string()), std::string(head.target()), "",
                    std::string(head[http::field::content_type])};
      if (std::optional<HttpResponse> refused = gate_(r, peer_, limit)) {
        // Unread, the rest of the request is not worth a keep-alive: close after the answer.
        if (refused->deferred) return Defer(std::move(refused->deferred), head.version());
        return SendString(*refused, head.version(), false);
      }
    }
    if (parser_->content_length() && *parser_->content_length() > limit) {
      return SendError(http::status::payload_too_large, "request too large for this route");
    }
    parser_->body_limit(limit);
    if (parser_->is_done()) return Handle();
    // The whole body within one read timeout: a slow sender is cut off, not waited for.
    beast::get_lowest_layer(stream_).expires_after(kReadTimeout);
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec == http::error::body_limit) return self->SendError(http::status::payload_too_large, "request too large");
      if (ec) return;  // timeout or reset
      self->Handle();
    });
  }

  // A gate's refusal made on the handler pool (HttpResponse::deferred), sent from the strand.
  void Defer(std::function<HttpResponse()> make, unsigned version) {
    handlers_.Submit([self = shared_from_this(), make = std::move(make), version] {
      auto out = std::make_shared<HttpResponse>();
      try {
        *out = make();
      } catch (const std::exception& e) {
        spdlog::error("HTTPS refusal: {}", e.what());
        *out = JsonResponse(500, R"({"error":"internal error"})");
      }
      asio::post(self->stream_.get_executor(), [self, out, version] { self->SendString(*out, version, false); });
    });
  }

  // The handler runs on the handler pool; its response is written from this connection's strand.
  void Handle() {
    http::request<http::string_body> req = parser_->release();
    auto r = std::make_shared<HttpRequest>(
        HttpRequest{std::string(req.method_string()), std::string(req.target()), std::move(req.body()),
                    std::string(req[http::field::content_type]), std::string(req[http::field::accept_encoding])});
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();
    if (RequestTraceOn()) {
      trace_ = std::make_shared<RequestTrace>();
      trace_->submitted_us = RequestTrace::NowUs();
      trace_->what = r->method + " " + r->target.substr(0, r->target.find('?'));
    }
    handlers_.Submit([self = shared_from_this(), r, keep_alive, version, trace = trace_] {
      auto out = std::make_shared<HttpResponse>();
      RequestTraceScope scope(trace.get());
      if (trace) trace->started_us = RequestTrace::NowUs();
      try {
        *out = self->handler_(*r, self->peer_);
      } catch (const std::exception& e) {
        spdlog::error("HTTPS {} {}: {}", r->method, r->target, e.what());
        *out = JsonResponse(500, R"({"error":"internal error"})");
      }
      if (trace) {
        trace->handled_us = RequestTrace::NowUs();
        trace->bytes = out->body.size();
      }
      asio::post(self->stream_.get_executor(),
                 [self, out, keep_alive, version] { self->Respond(std::move(*out), version, keep_alive); });
    });
  }

  void Respond(HttpResponse&& out, unsigned version, bool keep_alive) {
    if (!out.tar.empty()) return StreamTar(out, version);
    if (!out.file.empty() && out.object && out.object->ranged()) {  // an object inside a segment
      http::response<http::basic_file_body<RangeFile>> res{static_cast<http::status>(out.status), version};
      beast::error_code ec;
      RangeFile file;
      file.OpenRange(out.file.c_str(), out.object->offset(), out.object->length(), ec);
      if (!ec) res.body().reset(std::move(file), ec);
      if (ec) return SendString(JsonResponse(404, R"({"error":"object file missing"})"), version, keep_alive);
      res.set(http::field::content_type, out.content_type);
      res.keep_alive(keep_alive);
      res.prepare_payload();
      return Write(std::move(res));
    }
    if (!out.file.empty()) {
      http::response<http::file_body> res{static_cast<http::status>(out.status), version};
      beast::error_code ec;
      res.body().open(out.file.c_str(), beast::file_mode::scan, ec);
      if (ec) {
        return SendString(JsonResponse(404, R"({"error":"object file missing"})"), version, keep_alive);
      }
      res.set(http::field::content_type, out.content_type);
      res.keep_alive(keep_alive);
      res.prepare_payload();
      return Write(std::move(res));
    }
    SendString(std::move(out), version, keep_alive);
  }

  // Chunked transfer, one piece of the archive at a time; the connection closes afterwards.
  void StreamTar(const HttpResponse& out, unsigned version) {
    auto res = std::make_shared<http::response<http::empty_body>>(static_cast<http::status>(out.status), version);
    res->set(http::field::content_type, "application/x-tar");
    res->chunked(true);
    res->keep_alive(false);
    auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
    tar_ = std::make_unique<TarStream>(out.tar, out.objects);
    beast::get_lowest_layer(stream_).expires_after(kReadTimeout);
    http::async_write_header(stream_, *sr, [self = shared_from_this(), res, sr](beast::error_code ec, size_t) {
      if (self->trace_) self->LogTrace();  // respond= up to the header; the archive streams on
      if (!ec) self->WriteTarPiece();
    });
  }

  void WriteTarPiece() {
    auto piece = std::make_shared<std::string>(tar_->Next());
    beast::get_lowest_layer(stream_).expires_after(kReadTimeout);
    if (piece->empty() && !tar_->failed().empty()) {
      // No last chunk: the client sees a broken transfer, never a shorter archive that looks whole.
      stats_.archives_aborted++;
      spdlog::error("archive for '{}' aborted: {} cannot be read whole; connection reset", peer_.subject,
                    tar_->failed());
      beast::error_code ignored;
      auto& socket = beast::get_lowest_layer(stream_).socket();
      socket.set_option(asio::socket_base::linger(true, 0), ignored);  // RST, not FIN
      socket.close(ignored);
      return;
    }
    if (piece->empty()) {
      asio::async_write(stream_, http::make_chunk_last(), [self = shared_from_this()](beast::error_code ec, size_t) {
        if (!ec) self->Close();
      });
      return;
    }
    asio::async_write(stream_, http::make_chunk(asio::buffer(*piece)),
                      [self = shared_from_this(), piece](beast::error_code ec, size_t) {
                        if (!ec) self->WriteTarPiece();
                      });
  }

  // The body is moved, not copied: a worklist page is tens of kB.
  void SendString(HttpResponse out, unsigned version, bool keep_alive) {
    http::response<http::string_body> res{static_cast<http::status>(out.status), version};
    res.set(http::field::content_type, out.content_type);
    res.set(http::field::server, "teleread");
    if (!out.content_encoding.empty()) res.set(http::field::content_encoding, out.content_encoding);
    if (!out.vary.empty()) res.set(http::field::vary, out.vary);
    res.body() = std::move(out.body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    Write(std::move(res));
  }

  void SendError(http::status status, const std::string& what) {
    SendString(JsonResponse(static_cast<int>(status), "{\"error\":\"" + what + "\"}"), 11, false);
  }

  template <typename Response>
  void Write(Response&& res) {
    auto msg = std::make_shared<std::decay_t<Response>>(std::move(res));
    if (trace_) trace_->writing_us = RequestTrace::NowUs();
    beast::get_lowest_layer(stream_).expires_after(kReadTimeout);
    http::async_write(stream_, *msg, [self = shared_from_this(), msg](beast::error_code ec, size_t) {
      if (self->trace_) self->LogTrace();
      if (ec) return;
      if (!msg->keep_alive()) return self->Close();
      self->Read();
    });
  }

  // One line: waiting for a handler thread, the handler (its SQL, its audit commit, the reader's
  // critical results, the gzip answer made), then the answer: respond= in all, post= waiting for
  // the strand, write= the TLS write; all in microseconds.
  void LogTrace() {
    const RequestTrace& t = *trace_;
    const int64_t now = RequestTrace::NowUs();
    const int64_t writing = t.writing_us ? t.writing_us : now;
    spdlog::warn(
        "trace {} total={} queue={} handler={} sql={} audit={} critical={} gzip={} page={} respond={} post={} write={} "
        "bytes={}",
        t.what, now - t.submitted_us, t.started_us - t.submitted_us, t.handled_us - t.started_us, t.sql_us, t.audit_us,
        t.critical_us, t.gzip_us, t.page, now - t.handled_us, writing - t.handled_us, now - writing, t.bytes);
    trace_.reset();
  }

  void Close() {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(5));
    stream_.async_shutdown([self = shared_from_this()](beast::error_code) { self->Linger(); });
  }

  // A request body left unread at close makes the kernel reset the connection, and a reset can
  // destroy the answer just sent (a 413, a 403) before the client reads it. So the write side is
  // shut and whatever still arrives is read into one small buffer and dropped, for a second.
  void Linger() {
    beast::error_code ec;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return;
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(1));
    Drain(std::make_shared<std::array<char, 16 * 1024>>());
  }

  void Drain(std::shared_ptr<std::array<char, 16 * 1024>> buffer) {
    beast::get_lowest_layer(stream_).async_read_some(asio::buffer(*buffer),
                                                     [self = shared_from_this(), buffer](beast::error_code ec, size_t) {
                                                       if (!ec) self->Drain(buffer);
                                                     });
  }

  beast::ssl_stream<beast::tcp_stream> stream_;
  const HttpHandler& handler_;
  HandlerPool& handlers_;
  const HttpGate& gate_;
  uint64_t body_limit_;
  HttpsStats& stats_;
  std::unique_ptr<ConnectionCounts::Ticket> ticket_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  PeerCertificate peer_;
  PeerCertificateCheck certificate_check_;
  bool first_request_ = true;
  std::unique_ptr<TarStream> tar_;
  std::shared_ptr<RequestTrace> trace_;  // the request being answered, when tracing (request_trace.h)
};

}  // namespace

struct HttpsServer::Impl {
  Impl(const HttpsConfig& c, HttpHandler h, HttpGate g) : config(c), handler(std::move(h)), gate(std::move(g)) {}
  const HttpsConfig& config;
  HttpHandler handler;
  HttpGate gate;
  HttpsStats stats;
  ConnectionCounts counts;
  asio::io_context ioc;
  ssl::context ctx{ssl::context::tls_server};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer backoff{ioc};
  std::vector<std::thread> threads;
  uint16_t port = 0;
  HandlerPool handlers{kHandlerThreads};  // last: joined before what its handlers use goes away

  void Accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        // Out of descriptors (EMFILE, ENFILE) or memory: accepting again at once would spin, and
        // the connection waits in the backlog meanwhile.
        if (stats.accept_errors++ % 100 == 0) spdlog::warn("HTTPS accept failed: {}; backing off", ec.message());
        backoff.expires_after(std::chrono::milliseconds(100));
        backoff.async_wait([this](beast::error_code wait_ec) {
          if (!wait_ec) Accept();
        });
        return;
      }
      beast::error_code addr_ec;
      const auto remote = socket.remote_endpoint(addr_ec);
      std::unique_ptr<ConnectionCounts::Ticket> ticket =
          addr_ec ? nullptr : counts.TryEnter(remote.address().to_string());
      if (!ticket) {
        if (stats.connections_refused++ % 100 == 0) {
          spdlog::warn("HTTPS connection from {} closed: over the connection limit",
                       addr_ec ? "?" : remote.address().to_string());
        }
        socket.close(addr_ec);
      } else {
        socket.set_option(tcp::no_delay(true), addr_ec);
        std::make_shared<Session>(std::move(socket), ctx, handler, handlers, gate, config.max_body_bytes, stats,
                                  std::move(ticket))
            ->Run();
      }
      Accept();
    });
  }
};

std::string HttpsStats::Metrics() const {
  std::string m;
  auto counter = [&m](const char* name, uint64_t value) {
    m += std::string("# TYPE ") + name + " counter\n" + name + " " + std::to_string(value) + "\n";
  };
  counter("teleread_https_connections_refused_total", connections_refused.load());
  counter("teleread_https_accept_errors_total", accept_errors.load());
  counter("teleread_https_sessions_ended_total", sessions_ended.load());
  counter("teleread_https_archives_aborted_total", archives_aborted.load());
  return m;
}

HttpsServer::HttpsServer(const HttpsConfig& config, HttpHandler handler, HttpGate gate)
    : impl_(new Impl(config, std::move(handler), std::move(gate))) {}

const HttpsStats& HttpsServer::stats() const { return impl_->stats; }

HttpsServer::~HttpsServer() { Stop(); }

void* HttpsServer::ssl_context() { return impl_->ctx.native_handle(); }

Status HttpsServer::Start(uint16_t port) {
  Impl& m = *impl_;
  boost::system::error_code ec;
  SSL_CTX* native = m.ctx.native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  m.ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                    ssl::context::single_dh_use);
  // BCP 195 (RFC 9325 4.2): TLS 1.2 with ECDHE/DHE and AEAD only; TLS 1.3 suites stay OpenSSL's.
  if (SSL_CTX_set_cipher_list(native, kBcp195Ciphers) != 1)
    return Status::InvalidArgument("https: the BCP 195 cipher list is refused by this OpenSSL");
  // Without a session id context OpenSSL aborts every resumption once client certificates are
  // verified. A resumed session keeps the certificate it was made with, checked again per request.
  static const unsigned char kSessionContext[] = "teleread-https";
  SSL_CTX_set_session_id_context(native, kSessionContext, sizeof kSessionContext - 1);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_SERVER);
  m.ctx.use_certificate_chain_file(m.config.certificate.string(), ec);
  if (ec) return Status::InvalidArgument("https.certificate " + m.config.certificate.string() + ": " + ec.message());
  m.ctx.use_private_key_file(m.config.key.string(), ssl::context::pem, ec);
  if (ec) return Status::InvalidArgument("https.key " + m.config.key.string() + ": " + ec.message());
  m.ctx.load_verify_file(m.config.ca.string(), ec);
  if (ec) return Status::InvalidArgument("https.ca " + m.config.ca.string() + ": " + ec.message());
  // Only certificates from the centre CA, and not revoked, get past the handshake.
  m.ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  if (!m.config.crl.empty()) {
    if (Result<int64_t> r = AddRevocationList(m.ctx.native_handle(), m.config.crl, m.config.ca); !r.ok()) {
      return Status::InvalidArgument("https.crl: " + r.status().message());
    }
  }

  tcp::endpoint endpoint(asio::ip::make_address(m.config.bind_address, ec), port);
  if (ec) return Status::InvalidArgument("https.bind_address: " + ec.message());
  m.acceptor.open(endpoint.protocol(), ec);
  if (!ec) m.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) m.acceptor.bind(endpoint, ec);
  if (!ec) m.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Status::IOError("HTTPS listen on " + m.config.bind_address + ":" + std::to_string(port) + ": " +
                           ec.message());
  m.port = m.acceptor.local_endpoint().port();
  int total = m.config.max_connections, per_address = m.config.max_connections_per_address;
  if (rlimit fds{}; ::getrlimit(RLIMIT_NOFILE, &fds) == 0 && fds.rlim_cur != RLIM_INFINITY) {
    total = static_cast<int>(std::min<rlim_t>(total, std::max<rlim_t>(fds.rlim_cur / 2, 1)));
    per_address = std::min(per_address, total);
  }
  m.counts.SetLimits(total, per_address);
  m.Accept();
  for (int i = 0; i < m.config.threads; ++i) m.threads.emplace_back([&m] { m.ioc.run(); });
  spdlog::info("HTTPS reading API on {}:{} (mutual TLS, CA {}; {} connections at most, {} per address)",
               m.config.bind_address, m.port, m.config.ca.string(), total, per_address);
  return Status::Ok();
}

void HttpsServer::Stop() {
  Impl& m = *impl_;
  if (m.threads.empty()) return;
  asio::post(m.ioc, [&m] {
    boost::system::error_code ec;
    m.acceptor.close(ec);
  });
  m.ioc.stop();
  for (std::thread& t : m.threads) t.join();
  m.threads.clear();
  m.handlers.Stop();
}

uint16_t HttpsServer::port() const { return impl_->port; }

}  // namespace teleread
