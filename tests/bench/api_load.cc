// teleread-api-load: latency of the reading API under concurrent keep-alive HTTPS clients with
// client certificates (mutual TLS), as the radiologists' workstations connect.
//   --mode worklist: GET /api/v1/worklist?limit=50 (the first page), in a loop per client;
//   --mode claim:    POST /api/v1/studies/<uid>/claim, each client taking the next UID of --uids.
// Each client is one connection, one request at a time; the TLS handshake is not timed. With
// several --cert/--key pairs (one identity each), client i presents pair i modulo their number. Without
// --think-ms each sends its next request as soon as the last is answered (closed loop: on a
// machine this small, latency is then about clients / throughput); with --think-ms LO-HI each
// waits a random LO..HI ms between requests, as a workstation refreshing or claiming does.
// Worklist requests ask for gzip (Accept-Encoding), as the viewer does, and each gzip answer is
// inflated (timed: a workstation does it too); --no-gzip asks for plain JSON.
// Prints: mode=<m> clients=<c> n=<N> errors=<E> seconds=<s> rps=<r> p50_ms=<x> p99_ms=<y>
// max_ms=<z> client_cpu=<share of one core this program used>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/gunzip.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * sorted.size()));
  return sorted[std::min(sorted.size(), std::max<size_t>(rank, 1)) - 1];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Reading API latency under concurrent mutual-TLS keep-alive clients"};
  std::string host = "127.0.0.1", ca, mode = "worklist", uids_file, think;
  std::vector<std::string> certs, keys;
  int port = 0, clients = 32, requests = 100;
  bool gzip = true;
  app.add_option("--host", host);
  app.add_option("--port", port)->required();
  app.add_option("--cert", certs, "Client certificate (PEM); repeat for more identities")->required();
  app.add_option("--key", keys, "Client key (PEM), one per --cert")->required();
  app.add_option("--ca", ca, "Centre CA (PEM)")->required();
  app.add_option("--mode", mode)->check(CLI::IsMember({"worklist", "claim"}));
  app.add_option("--uids", uids_file, "Study UIDs to claim, one a line (claim mode)");
  app.add_option("--clients", clients)->check(CLI::Range(1, 1024));
  app.add_option("--requests", requests, "Requests per client")->check(CLI::Range(1, 1000000));
  app.add_flag("--gzip,!--no-gzip", gzip, "Ask for gzip worklist answers and inflate them (default)");
  app.add_option("--think-ms", think, "LO-HI: a random pause of LO..HI ms between a client's requests");
  CLI11_PARSE(app, argc, argv);
  int think_lo = 0, think_hi = 0;
  if (!think.empty() &&
      (std::sscanf(think.c_str(), "%d-%d", &think_lo, &think_hi) != 2 || think_lo < 0 || think_hi < think_lo)) {
    std::fprintf(stderr, "teleread-api-load: --think-ms wants LO-HI, e.g. 100-500\n");
    return 2;
  }

  std::vector<std::string> uids;
  if (mode == "claim") {
    std::ifstream in(uids_file);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) uids.push_back(line);
    }
    if (uids.size() < static_cast<size_t>(clients) * requests) {
      std::fprintf(stderr, "teleread-api-load: need %d UIDs, %zu given\n", clients * requests, uids.size());
      return 2;
    }
  }

  if (certs.size() != keys.size()) {
    std::fprintf(stderr, "teleread-api-load: one --key per --cert\n");
    return 2;
  }
  std::vector<std::unique_ptr<ssl::context>> contexts;
  for (size_t i = 0; i < certs.size(); ++i) {
    auto& ctx = *contexts.emplace_back(std::make_unique<ssl::context>(ssl::context::tls_client));
    ctx.load_verify_file(ca);
    ctx.use_certificate_chain_file(certs[i]);
    ctx.use_private_key_file(keys[i], ssl::context::pem);
    ctx.set_verify_mode(ssl::verify_peer);
  }

  std::atomic<size_t> next_uid{0};
  std::atomic<int> errors{0};
  std::mutex mu;
  std::vector<double> all_ms;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};

  auto client = [&](ssl::context& ctx) {
    std::vector<double> ms;
    try {
      asio::io_context ioc;
      beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
      tcp::resolver resolver(ioc);
      beast::get_lowest_layer(stream).connect(resolver.resolve(host, std::to_string(port)));
      beast::get_lowest_layer(stream).socket().set_option(tcp::no_delay(true));
      stream.handshake(ssl::stream_base::client);
      ++ready;
      while (!go) std::this_thread::yield();
      beast::flat_buffer buffer;
      std::mt19937 random(std::random_device{}());
      std::uniform_int_distribution<int> pause(think_lo, think_hi);
      for (int i = 0; i < requests; ++i) {
        // Spread from the start too, so that paced clients do not all ask at the same instant.
        if (think_hi > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause(random)));
        http::request<http::string_body> req;
        req.version(11);
        req.set(http::field::host, host);
        req.keep_alive(true);
        if (mode == "worklist") {
          req.method(http::verb::get);
          req.target("/api/v1/worklist?limit=50");
          if (gzip) req.set(http::field::accept_encoding, "gzip");
        } else {
          req.method(http::verb::post);
          req.target("/api/v1/studies/" + uids[next_uid++] + "/claim");
          req.prepare_payload();
        }
        auto t0 = Clock::now();
        http::write(stream, req);
        http::response<http::string_body> res;
        http::read(stream, buffer, res);
        // A worklist answer is whole JSON, inflated first if it came in gzip.
        bool whole = true;
        if (res[http::field::content_encoding] == "gzip") {
          teleread::Result<std::string> text = teleread::Gunzip(res.body(), teleread::kMaxApiAnswerText);
          whole = text.ok();
          res.body() = whole ? std::move(text.value()) : std::string();
        }
        if (mode == "worklist" && res.result_int() == 200)
          whole = whole && !res.body().empty() && res.body().front() == '{' && res.body().back() == '}';
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        if (!whole) {
          if (errors++ < 3) std::fprintf(stderr, "a worklist answer that is not whole JSON\n");
        } else if (res.result_int() != 200) {
          if (errors++ < 3) std::fprintf(stderr, "HTTP %u: %s\n", res.result_int(), res.body().substr(0, 200).c_str());
        }
      }
      beast::error_code ec;
      stream.shutdown(ec);
    } catch (const std::exception& e) {
      ++errors;
      ++ready;
      std::fprintf(stderr, "teleread-api-load: client failed: %s\n", e.what());
    }
    std::lock_guard<std::mutex> lock(mu);
    all_ms.insert(all_ms.end(), ms.begin(), ms.end());
  };

  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) threads.emplace_back(client, std::ref(*contexts[i % contexts.size()]));
  while (ready < clients) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto cpu = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  };
  const double cpu_before = cpu();
  auto start = Clock::now();
  go = true;
  for (std::thread& t : threads) t.join();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double client_cpu = (cpu() - cpu_before) / seconds;
  std::sort(all_ms.begin(), all_ms.end());
  std::printf(
      "mode=%s clients=%d identities=%zu%s%s n=%zu errors=%d seconds=%.2f rps=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f "
      "client_cpu=%.2f\n",
      mode.c_str(), clients, certs.size(), think.empty() ? "" : " think_ms=", think.c_str(), all_ms.size(),
      errors.load(), seconds, all_ms.size() / seconds, Percentile(all_ms, 50), Percentile(all_ms, 99),
      all_ms.empty() ? 0.0 : all_ms.back(), client_cpu);
  return errors.load() == 0 ? 0 : 1;
}
