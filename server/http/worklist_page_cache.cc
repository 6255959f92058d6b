#include "server/http/worklist_page_cache.h"

namespace teleread {
namespace {

// Callers times filter combinations in use; past it the pages kept are dropped all at once (a
// scan of many filters must not grow this).
constexpr size_t kMaxPages = 256;

}  // namespace

std::shared_ptr<const WorklistPageCache::Page> WorklistPageCache::Find(const std::string& key, uint64_t version,
                                                                       int64_t now_ms) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.version != version || now_ms >= it->second.valid_until_ms) return nullptr;
  ++hits_;
  return it->second.page;
}

void WorklistPageCache::Store(const std::string& key, uint64_t version, int64_t valid_until_ms,
                              std::shared_ptr<const Page> page) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  // A slower reader of an older version must not replace a newer page.
  if (it != entries_.end() && it->second.version > version) return;
  if (it == entries_.end() && entries_.size() >= kMaxPages) entries_.clear();
  entries_[key] = Entry{version, valid_until_ms, std::move(page)};
}

size_t WorklistPageCache::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}

}  // namespace teleread
