#include "viewer/api_client.h"

#include <toml++/toml.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <vector>

#include "common/gunzip.h"

namespace teleread::viewer {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

}  // namespace

Result<Profile> LoadProfile(const std::filesystem::path& path) {
  toml::table t;
  try {
    t = toml::parse_file(path.string());
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(path.string() + ":" + std::to_string(e.source().begin.line) + ": " +
                                   std::string(e.description()));
  }
  Profile p;
  const std::filesystem::path base = std::filesystem::absolute(path).parent_path();
  auto file = [&](const char* key) -> std::filesystem::path {
    std::filesystem::path v = t[key].value_or(std::string());
    return v.empty() || v.is_absolute() ? v : base / v;
  };
  std::string server = t["server"].value_or(std::string());
  const std::string scheme = "https://";
  if (server.rfind(scheme, 0) != 0)
    return Status::InvalidArgument(path.string() + ": server must be https://host:port");
  server = server.substr(scheme.size());
  while (!server.empty() && server.back() == '/') server.pop_back();
  size_t colon = server.rfind(':');
  p.host = server.substr(0, colon);
  if (colon != std::string::npos) p.port = server.substr(colon + 1);
  p.certificate = file("certificate");
  p.key = file("key");
  p.ca = file("ca");
  if (p.certificate.empty() || p.key.empty() || p.ca.empty()) {
    return Status::InvalidArgument(path.string() + ": certificate, key and ca are required");
  }
  return p;
}

struct ApiClient::Impl {
  explicit Impl(Profile p) : profile(std::move(p)) {}
  Profile profile;
  asio::io_context ioc;
  ssl::context ctx{ssl::context::tls_client};
  std::optional<beast::ssl_stream<beast::tcp_stream>> stream;

  Status Connect() {
    boost::system::error_code ec;
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    ctx.load_verify_file(profile.ca.string(), ec);
    if (ec) return Status::IOError("cannot read the CA bundle " + profile.ca.string() + ": " + ec.message());
    ctx.use_certificate_chain_file(profile.certificate.string(), ec);
    if (ec)
      return Status::IOError("cannot read your certificate " + profile.certificate.string() + ": " + ec.message());
    ctx.use_private_key_file(profile.key.string(), ssl::context::pem, ec);
    if (ec) return Status::IOError("cannot read your key " + profile.key.string() + ": " + ec.message());
    ctx.set_verify_mode(ssl::verify_peer);
    stream.emplace(ioc, ctx);
    // The server's certificate must name the host we dialled (IP or DNS).
    SSL_set1_host(stream->native_handle(), profile.host.c_str());
    tcp::resolver resolver(ioc);
    auto endpoints = resolver.resolve(profile.host, profile.port, ec);
    if (ec) return Status::IOError("cannot resolve " + profile.host + ": " + ec.message());
    beast::get_lowest_layer(*stream).expires_after(std::chrono::seconds(15));
    beast::get_lowest_layer(*stream).connect(endpoints, ec);
    if (ec) return Status::IOError("cannot reach " + profile.host + ":" + profile.port + ": " + ec.message());
    stream->handshake(ssl::stream_base::client, ec);
    if (ec) return Status::IOError("TLS with " + profile.host + ":" + profile.port + " failed: " + ec.message());
    return Status::Ok();
  }
};

ApiClient::ApiClient(Profile profile) : impl_(new Impl(std::move(profile))) {}

ApiClient::~ApiClient() {
  if (impl_->stream) {
    boost::system::error_code ec;
    impl_->stream->shutdown(ec);
  }
}

Result<ApiResponse> ApiClient::Call(const std::string& method, const std::string& target, const std::string& body,
                                    const std::string& content_type) {
  if (!impl_->stream) {
    if (Status s = impl_->Connect(); !s.ok()) return s;
  }
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, impl_->profile.host);
  req.set(http::field::user_agent, "teleread");
  // The worklist comes compressed, the rest as it is.
  req.set(http::field::accept_encoding, "gzip");
  if (!content_type.empty()) req.set(http::field::content_type, content_type);
  req.body() = body;
  req.prepare_payload();
  boost::system::error_code ec;
  beast::get_lowest_layer(*impl_->stream).expires_after(std::chrono::seconds(120));
  http::write(*impl_->stream, req, ec);
  if (ec) return Status::IOError("sending the request failed: " + ec.message());
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1ull << 30);
  http::read(*impl_->stream, buffer, parser, ec);
  if (ec) return Status::IOError("reading the response failed: " + ec.message());
  if (parser.get()[http::field::content_encoding] == "gzip") {
    Result<std::string> text = Gunzip(parser.get().body(), kMaxApiAnswerText);
    if (!text.ok()) return Status::IOError("reading the response failed: " + text.status().message());
    return ApiResponse{static_cast<int>(parser.get().result_int()), std::move(text.value())};
  }
  return ApiResponse{static_cast<int>(parser.get().result_int()), parser.get().body()};
}

Result<ApiResponse> ApiClient::Download(const std::string& target, const std::filesystem::path& out,
                                        const std::function<void(uint64_t bytes)>& progress) {
  if (!impl_->stream) {
    if (Status s = impl_->Connect(); !s.ok()) return s;
  }
  // Any failure below leaves the stream in the middle of a message: drop it.
  auto fail = [this](Status s) -> Result<ApiResponse> {
    impl_->stream.reset();
    return s;
  };
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, impl_->profile.host);
  req.set(http::field::user_agent, "teleread");
  auto& socket = beast::get_lowest_layer(*impl_->stream);
  boost::system::error_code ec;
  socket.expires_after(std::chrono::seconds(60));
  http::write(*impl_->stream, req, ec);
  if (ec) return fail(Status::IOError("sending the request failed: " + ec.message()));
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  // No limit; not boost::none, which Boost 1.74 compares as smaller than any length.
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  http::read_header(*impl_->stream, buffer, parser, ec);
  if (ec) return fail(Status::IOError("reading the response failed: " + ec.message()));
  const int status = static_cast<int>(parser.get().result_int());
  const bool success = status / 100 == 2;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(nullptr, &std::fclose);
  if (success) {
    file.reset(std::fopen(out.c_str(), "wb"));
    if (!file) return fail(Status::FromErrno(errno, "cannot create " + out.string()));
  }
  std::string answer;
  std::vector<char> piece(1 << 16);
  uint64_t received = 0;
  while (!parser.is_done()) {
    parser.get().body().data = piece.data();
    parser.get().body().size = piece.size();
    // The timeout is per piece: a large object on a slow link is fine as long as it moves.
    socket.expires_after(std::chrono::seconds(60));
    http::read(*impl_->stream, buffer, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return fail(Status::IOError("reading the response failed: " + ec.message()));
    const size_t n = piece.size() - parser.get().body().size;
    if (n == 0) continue;
    received += n;
    if (!success) {
      answer.append(piece.data(), n);
      continue;
    }
    if (std::fwrite(piece.data(), 1, n, file.get()) != n) {
      return fail(Status::FromErrno(errno, "cannot write " + out.string()));
    }
    if (progress) progress(received);
  }
  if (file && std::fclose(file.release()) != 0) return fail(Status::FromErrno(errno, "cannot write " + out.string()));
  if (!parser.keep_alive()) impl_->stream.reset();
  return ApiResponse{status, std::move(answer)};
}

}  // namespace teleread::viewer
