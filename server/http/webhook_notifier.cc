#include "server/http/webhook_notifier.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>
#include <optional>

namespace teleread {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

struct Url {
  std::string host, port = "443", target = "/";
};

std::optional<Url> ParseUrl(const std::string& url) {
  const std::string scheme = "https://";
  if (url.rfind(scheme, 0) != 0) return std::nullopt;
  Url u;
  std::string rest = url.substr(scheme.size());
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    u.target = rest.substr(slash);
    rest = rest.substr(0, slash);
  }
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']') == std::string::npos) {
    u.port = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  u.host = rest;
  if (u.host.empty()) return std::nullopt;
  return u;
}

}  // namespace

std::string CriticalNotice(const Config& config, const CriticalResult& c) {
  nlohmann::json j{{"event", "critical_result"},
                   {"centre", config.centre.name},
                   {"report_sop_instance_uid", c.sop_instance_uid},
                   {"study_instance_uid", c.study_instance_uid},
                   {"accession_number", c.accession_number},
                   {"member", c.member_id},
                   {"signer", c.signer},
                   {"opened_ms", c.opened_ms},
                   {"acknowledge", "POST /api/v1/reports/" + c.sop_instance_uid + "/acknowledge"}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string WebhookNotifier::Notify(const Member& member, const CriticalResult& result) {
  std::optional<Url> url = ParseUrl(member.critical_webhook);
  if (!url) return "not an https:// URL: " + member.critical_webhook;
  try {
    asio::io_context io;
    ssl::context ctx(ssl::context::tls_client);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                    ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ctx.set_default_verify_paths();
    if (!config_.https.ca.empty()) ctx.load_verify_file(config_.https.ca.string());
    ctx.use_certificate_chain_file(config_.https.certificate.string());
    ctx.use_private_key_file(config_.https.key.string(), ssl::context::pem);
    ctx.set_verify_mode(ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
    // The receiver's certificate must name the host: an IP address or a DNS name.
    X509_VERIFY_PARAM* param = SSL_get0_param(stream.native_handle());
    if (X509_VERIFY_PARAM_set1_ip_asc(param, url->host.c_str()) != 1) {
      X509_VERIFY_PARAM_set1_host(param, url->host.c_str(), 0);
      SSL_set_tlsext_host_name(stream.native_handle(), url->host.c_str());
    }
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(timeout_seconds_));
    tcp::resolver resolver(io);
    beast::get_lowest_layer(stream).connect(resolver.resolve(url->host, url->port));
    stream.handshake(ssl::stream_base::client);
    http::request<http::string_body> req{http::verb::post, url->target, 11};
    req.set(http::field::host, url->host);
    req.set(http::field::user_agent, "TeleRead");
    req.set(http::field::content_type, "application/json");
    req.body() = CriticalNotice(config_, result);
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024);
    beast::error_code ec;
    http::read(stream, buffer, parser, ec);
    // The answer's status is what counts; a receiver that closes without close_notify after it
    // (as many HTTP/1.0 servers do) has still answered.
    if (ec && !parser.is_header_done()) return "no answer: " + ec.message();
    const unsigned status = parser.get().result_int();
    beast::error_code ignored;
    stream.shutdown(ignored);
    if (status / 100 != 2) return "the receiver answered HTTP " + std::to_string(status);
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace teleread
