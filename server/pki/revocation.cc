#include "server/pki/revocation.h"

#include <algorithm>
#include <chrono>

#include "common/log.h"
#include "server/pki/certificate_expiry.h"
#include "server/pki/pki.h"

namespace teleread {

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
      Refresh();
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
      spdlog::error("revocation list {} changed but is refused: {}; the last one read stays in use",
                    w.path.string(), next_update.status().message());
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
