#include "server/https_server.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <thread>
#include <vector>

#include "common/log.h"
#include "server/pki.h"

namespace teleread {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr auto kReadTimeout = std::chrono::seconds(30);
constexpr size_t kHeaderLimit = 16 * 1024;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ssl::context& ctx, const HttpHandler& handler, uint64_t body_limit)
      : stream_(std::move(socket), ctx), handler_(handler), body_limit_(body_limit) {}

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
    parser_->header_limit(kHeaderLimit);
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

  void Handle() {
    http::request<http::string_body> req = parser_->release();
    HttpRequest r{std::string(req.method_string()), std::string(req.target()), std::move(req.body()),
                  std::string(req[http::field::content_type])};
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();
    HttpResponse out;
    try {
      out = handler_(r, peer_);
    } catch (const std::exception& e) {
      spdlog::error("HTTPS {} {}: {}", r.method, r.target, e.what());
      out = HttpResponse{500, "application/json", R"({"error":"internal error"})", {}};
    }
    if (!out.file.empty()) {
      http::response<http::file_body> res{static_cast<http::status>(out.status), version};
      beast::error_code ec;
      res.body().open(out.file.c_str(), beast::file_mode::scan, ec);
      if (ec) {
        return SendString(HttpResponse{404, "application/json", R"({"error":"object file missing"})", {}}, version,
                          keep_alive);
      }
      res.set(http::field::content_type, out.content_type);
      res.keep_alive(keep_alive);
      res.prepare_payload();
      return Write(std::move(res));
    }
    SendString(out, version, keep_alive);
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
    SendString(HttpResponse{static_cast<int>(status), "application/json", "{\"error\":\"" + what + "\"}", {}}, 11,
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
  uint64_t body_limit_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  PeerCertificate peer_;
  bool first_request_ = true;
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

  void Accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        socket.set_option(tcp::no_delay(true));
        std::make_shared<Session>(std::move(socket), ctx, handler, config.max_body_bytes)->Run();
      }
      Accept();
    });
  }
};

HttpsServer::HttpsServer(const HttpsConfig& config, HttpHandler handler)
    : impl_(new Impl(config, std::move(handler))) {}

HttpsServer::~HttpsServer() { Stop(); }

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
  // Only certificates from the centre CA get past the handshake.
  m.ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);

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
}

uint16_t HttpsServer::port() const { return impl_->port; }

}  // namespace teleread
