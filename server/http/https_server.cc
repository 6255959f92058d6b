#include "server/http/https_server.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <ctime>
#include <fstream>
#include <thread>
#include <vector>

#include "common/log.h"
#include "server/http/handler_pool.h"
#include "server/pki/pki.h"

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

constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr auto kReadTimeout = std::chrono::seconds(30);
// Handlers mostly wait (SQLite's group commit, disk): one per workstation connection we expect
// at once lets simultaneous claims share one commit instead of queueing for the next.
constexpr int kHandlerThreads = 32;

// Produces a ustar archive piece by piece: a header block, the file's bytes, padding to 512,
// and two zero blocks at the end. A file that cannot be opened ends the archive early.
class TarStream {
 public:
  explicit TarStream(std::vector<std::pair<std::string, std::filesystem::path>> files) : files_(std::move(files)) {}

  // The next piece, empty when the archive is complete.
  std::string Next() {
    if (done_) return "";
    if (!in_.is_open()) {
      if (index_ == files_.size()) {
        done_ = true;
        return std::string(1024, '\0');
      }
      in_.open(files_[index_].second, std::ios::binary);
      std::error_code ec;
      remaining_ = std::filesystem::file_size(files_[index_].second, ec);
      if (!in_ || ec) {
        done_ = true;
        return "";
      }
      return Header(files_[index_].first, remaining_);
    }
    std::string piece(std::min<uint64_t>(remaining_, kPiece), '\0');
    in_.read(piece.data(), static_cast<std::streamsize>(piece.size()));
    remaining_ -= piece.size();
    if (remaining_ == 0) {
      const uint64_t size = std::filesystem::file_size(files_[index_].second);
      piece.append((512 - size % 512) % 512, '\0');
      in_.close();
      ++index_;
    }
    return piece;
  }

 private:
  static constexpr uint64_t kPiece = 256 * 1024;

  static std::string Header(const std::string& name, uint64_t size) {
    std::string h(512, '\0');
    auto put = [&h](size_t at, size_t len, const std::string& v) { h.replace(at, std::min(len, v.size()), v.substr(0, len)); };
    auto octal = [](uint64_t v, int width) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%0*llo", width, static_cast<unsigned long long>(v));
      return std::string(buf);
    };
    put(0, 100, name);
    put(100, 8, "0000644");
    put(108, 8, "0000000");
    put(116, 8, "0000000");
    put(124, 12, octal(size, 11));
    put(136, 12, octal(static_cast<uint64_t>(std::time(nullptr)), 11));
    put(148, 8, "        ");
    h[156] = '0';
    put(257, 6, std::string("ustar\0", 6));
    put(263, 2, "00");
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    put(148, 8, octal(sum, 6) + std::string("\0 ", 2));
    return h;
  }

  std::vector<std::pair<std::string, std::filesystem::path>> files_;
  size_t index_ = 0;
  std::ifstream in_;
  uint64_t remaining_ = 0;
  bool done_ = false;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ssl::context& ctx, const HttpHandler& handler, HandlerPool& handlers,
          uint64_t body_limit)
      : stream_(std::move(socket), ctx), handler_(handler), handlers_(handlers), body_limit_(body_limit) {}

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

  void Read() {
    parser_.emplace();
    parser_->header_limit(kMaxHttpHeaderBytes);
    parser_->body_limit(body_limit_);
    beast::get_lowest_layer(stream_).expires_after(first_request_ ? kReadTimeout : kIdleTimeout);
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec == http::error::end_of_stream) return self->Close();
      if (ec) {
        if (ec == http::error::body_limit || ec == http::error::header_limit) {
          return self->SendError(http::status::payload_too_large, "request too large");
        }
        return;  // timeout or reset: nothing to answer
      }
      self->first_request_ = false;
      self->Handle();
    });
  }

  // The handler runs on the handler pool; its response is written from this connection's strand.
  void Handle() {
    http::request<http::string_body> req = parser_->release();
    auto r = std::make_shared<HttpRequest>(HttpRequest{std::string(req.method_string()), std::string(req.target()),
                                                       std::move(req.body()),
                                                       std::string(req[http::field::content_type])});
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();
    handlers_.Submit([self = shared_from_this(), r, keep_alive, version] {
      auto out = std::make_shared<HttpResponse>();
      try {
        *out = self->handler_(*r, self->peer_);
      } catch (const std::exception& e) {
        spdlog::error("HTTPS {} {}: {}", r->method, r->target, e.what());
        *out = JsonResponse(500, R"({"error":"internal error"})");
      }
      asio::post(self->stream_.get_executor(),
                 [self, out, keep_alive, version] { self->Respond(*out, version, keep_alive); });
    });
  }

  void Respond(const HttpResponse& out, unsigned version, bool keep_alive) {
    if (!out.tar.empty()) return StreamTar(out, version);
    if (!out.file.empty()) {
      http::response<http::file_body> res{static_cast<http::status>(out.status), version};
      beast::error_code ec;
      res.body().open(out.file.c_str(), beast::file_mode::scan, ec);
      if (ec) {
        return SendString(JsonResponse(404, R"({"error":"object file missing"})"), version,
                          keep_alive);
      }
      res.set(http::field::content_type, out.content_type);
      res.keep_alive(keep_alive);
      res.prepare_payload();
      return Write(std::move(res));
    }
    SendString(out, version, keep_alive);
  }

  // Chunked transfer, one piece of the archive at a time; the connection closes afterwards.
  void StreamTar(const HttpResponse& out, unsigned version) {
    auto res = std::make_shared<http::response<http::empty_body>>(static_cast<http::status>(out.status), version);
    res->set(http::field::content_type, "application/x-tar");
    res->chunked(true);
    res->keep_alive(false);
    auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
    tar_ = std::make_unique<TarStream>(out.tar);
    beast::get_lowest_layer(stream_).expires_after(kReadTimeout);
    http::async_write_header(stream_, *sr, [self = shared_from_this(), res, sr](beast::error_code ec, size_t) {
      if (!ec) self->WriteTarPiece();
    });
  }

  void WriteTarPiece() {
    auto piece = std::make_shared<std::string>(tar_->Next());
    beast::get_lowest_layer(stream_).expires_after(kReadTimeout);
    if (piece->empty()) {
      asio::async_write(stream_, http::make_chunk_last(),
                        [self = shared_from_this()](beast::error_code ec, size_t) {
                          if (!ec) self->Close();
                        });
      return;
    }
    asio::async_write(stream_, http::make_chunk(asio::buffer(*piece)),
                      [self = shared_from_this(), piece](beast::error_code ec, size_t) {
                        if (!ec) self->WriteTarPiece();
                      });
  }

  void SendString(const HttpResponse& out, unsigned version, bool keep_alive) {
    http::response<http::string_body> res{static_cast<http::status>(out.status), version};
    res.set(http::field::content_type, out.content_type);
    res.set(http::field::server, "teleread");
    res.body() = out.body;
    res.keep_alive(keep_alive);
    res.prepare_payload();
    Write(std::move(res));
  }

  void SendError(http::status status, const std::string& what) {
    SendString(JsonResponse(static_cast<int>(status), "{\"error\":\"" + what + "\"}"), 11,
               false);
  }

  template <typename Response>
  void Write(Response&& res) {
    auto msg = std::make_shared<std::decay_t<Response>>(std::move(res));
    beast::get_lowest_layer(stream_).expires_after(kReadTimeout);
    http::async_write(stream_, *msg, [self = shared_from_this(), msg](beast::error_code ec, size_t) {
      if (ec) return;
      if (!msg->keep_alive()) return self->Close();
      self->Read();
    });
  }

  void Close() {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(5));
    stream_.async_shutdown([self = shared_from_this()](beast::error_code) {});
  }

  beast::ssl_stream<beast::tcp_stream> stream_;
  const HttpHandler& handler_;
  HandlerPool& handlers_;
  uint64_t body_limit_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  PeerCertificate peer_;
  bool first_request_ = true;
  std::unique_ptr<TarStream> tar_;
};

}  // namespace

struct HttpsServer::Impl {
  Impl(const HttpsConfig& c, HttpHandler h) : config(c), handler(std::move(h)) {}
  const HttpsConfig& config;
  HttpHandler handler;
  asio::io_context ioc;
  ssl::context ctx{ssl::context::tls_server};
  tcp::acceptor acceptor{ioc};
  std::vector<std::thread> threads;
  uint16_t port = 0;
  HandlerPool handlers{kHandlerThreads};  // last: joined before what its handlers use goes away

  void Accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        socket.set_option(tcp::no_delay(true));
        std::make_shared<Session>(std::move(socket), ctx, handler, handlers, config.max_body_bytes)->Run();
      }
      Accept();
    });
  }
};

HttpsServer::HttpsServer(const HttpsConfig& config, HttpHandler handler)
    : impl_(new Impl(config, std::move(handler))) {}

HttpsServer::~HttpsServer() { Stop(); }

void* HttpsServer::ssl_context() { return impl_->ctx.native_handle(); }

Status HttpsServer::Start(uint16_t port) {
  Impl& m = *impl_;
  boost::system::error_code ec;
  SSL_CTX_set_min_proto_version(m.ctx.native_handle(), TLS1_2_VERSION);
  m.ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                    ssl::context::single_dh_use);
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
  if (ec) return Status::IOError("HTTPS listen on " + m.config.bind_address + ":" + std::to_string(port) + ": " + ec.message());
  m.port = m.acceptor.local_endpoint().port();
  m.Accept();
  for (int i = 0; i < m.config.threads; ++i) m.threads.emplace_back([&m] { m.ioc.run(); });
  spdlog::info("HTTPS reading API on {}:{} (mutual TLS, CA {})", m.config.bind_address, m.port, m.config.ca.string());
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
