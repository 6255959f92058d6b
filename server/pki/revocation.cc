#include "server/pki/revocation.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <limits>
#include <memory>

#include "common/log.h"
#include "server/pki/certificate_expiry.h"
#include "server/pki/openssl_util.h"
#include "server/pki/pki.h"

namespace teleread {

namespace {

std::atomic<uint64_t> trust_store_generation{0};

uint64_t TrustStoreGeneration() { return trust_store_generation.load(std::memory_order_acquire); }

// PeerCertificateProblem; on a pass, `not_after` (when given) is the earliest notAfter in the
// verified chain, in seconds since the epoch.
std::optional<std::string> Verify(SSL* s, int64_t* not_after) {
  X509* cert = SSL_get0_peer_certificate(s);
  if (!cert) return std::string("no client certificate");
  ERR_set_mark();
  std::unique_ptr<X509_STORE_CTX, void (*)(X509_STORE_CTX*)> ctx(X509_STORE_CTX_new(), X509_STORE_CTX_free);
  std::optional<std::string> problem;
  // The chain the client sent; absent after resumption, which is fine: the store holds the CA.
  if (!ctx || X509_STORE_CTX_init(ctx.get(), SSL_CTX_get_cert_store(SSL_get_SSL_CTX(s)), cert,
                                  SSL_get_peer_cert_chain(s)) != 1) {
    problem = "the certificate cannot be checked again";
  } else {
    X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT);
    if (X509_verify_cert(ctx.get()) != 1) {
      problem = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
    } else if (not_after) {
      STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
      *not_after = std::numeric_limits<int64_t>::max();
      for (int i = 0; chain && i < sk_X509_num(chain); ++i) {
        // An unreadable time: verified again at the next request.
        *not_after =
            std::min(*not_after, pki_detail::EpochSeconds(X509_get0_notAfter(sk_X509_value(chain, i))).value_or(0));
      }
    }
  }
  ERR_pop_to_mark();
  return problem;
}

}  // namespace

std::optional<std::string> PeerCertificateProblem(void* ssl) { return Verify(static_cast<SSL*>(ssl), nullptr); }

void TrustStoreChanged() { trust_store_generation.fetch_add(1, std::memory_order_acq_rel); }

std::optional<std::string> PeerCertificateCheck::Problem(void* ssl) {
  const auto steady = std::chrono::steady_clock::now();
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  const uint64_t generation = TrustStoreGeneration();  // before the check: a later change re-checks
  if (valid_ && generation == generation_ && steady < recheck_ && now_ms < not_after_ms_) return std::nullopt;
  int64_t not_after = 0;
  std::optional<std::string> problem = Verify(static_cast<SSL*>(ssl), &not_after);
  valid_ = !problem && not_after > 0;
  if (valid_) {
    // OpenSSL refuses a certificate once the time is past notAfter: re-checked from that second on.
    recheck_ = steady + std::chrono::seconds(1);
    not_after_ms_ = not_after * 1000;
    generation_ = generation;
  }
  return problem;
}

RevocationLists::RevocationLists(CertificateExpiry& expiry, std::chrono::seconds interval)
    : expiry_(expiry), interval_(interval) {}

RevocationLists::~RevocationLists() { Stop(); }

void RevocationLists::Attach(const std::string& name, const std::filesystem::path& path,
                             const std::filesystem::path& ca, void* ssl_ctx) {
  std::lock_guard<std::mutex> lock(mu_);
  for (Watched& w : watched_) {
    if (w.path == path) {
      w.contexts.emplace_back(ca, ssl_ctx);
      if (std::find(w.names.begin(), w.names.end(), name) == w.names.end()) w.names.push_back(name);
      return;
    }
  }
  Watched w{{name}, path, {{ca, ssl_ctx}}, {}, 0};
  std::error_code ec;
  w.mtime = std::filesystem::last_write_time(path, ec);
  w.size = std::filesystem::file_size(path, ec);
  watched_.push_back(std::move(w));
}

void RevocationLists::Start() {
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, interval_, [this] { return stopping_; });
      if (stopping_) break;
      lock.unlock();
      try {
        Refresh();
      } catch (const std::exception& e) {  // e.g. no memory: the old lists stay; look again next time
        spdlog::error("revocation lists not re-read: {}", e.what());
      }
      lock.lock();
    }
  });
}

void RevocationLists::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int RevocationLists::Refresh() {
  std::lock_guard<std::mutex> lock(mu_);
  int reread = 0;
  for (Watched& w : watched_) {
    std::error_code ec;
    const auto mtime = std::filesystem::last_write_time(w.path, ec);
    const uintmax_t size = ec ? 0 : std::filesystem::file_size(w.path, ec);
    if (ec) {
      spdlog::error("revocation list {} cannot be read: {}; the last one read stays in use", w.path.string(),
                    ec.message());
      continue;
    }
    if (mtime == w.mtime && size == w.size) continue;
    // Checked against every CA first, so that a bad file reaches no context.
    Result<int64_t> next_update = Status::NotFound("no context");
    for (const auto& [ca, ctx] : w.contexts) {
      next_update = AddRevocationList(nullptr, w.path, ca);
      if (!next_update.ok()) break;
    }
    if (next_update.ok()) {
      for (const auto& [ca, ctx] : w.contexts) {
        if (Result<int64_t> added = AddRevocationList(ctx, w.path, ca); !added.ok()) next_update = added.status();
      }
    }
    w.mtime = mtime;
    w.size = size;
    ++reread;
    if (!next_update.ok()) {
      spdlog::error("revocation list {} changed but is refused: {}; the last one read stays in use", w.path.string(),
                    next_update.status().message());
      continue;
    }
    const int64_t now =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    for (const std::string& name : w.names) expiry_.Observe(name, next_update.value(), now);
    spdlog::info("revocation list {} re-read: now in use", w.path.string());
  }
  return reread;
}

}  // namespace teleread
