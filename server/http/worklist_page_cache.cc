#include "server/http/worklist_page_cache.h"

namespace teleread {
namespace {

// What a kept page costs beyond its JSON: the key twice (map and list) and the nodes.
size_t Cost(const std::string& key, const WorklistPageCache::Page& page) {
  return 2 * key.size() + page.items_json.size() + 160;
}

}  // namespace

std::string WorklistPageCache::Key(const std::string& caller, bool admin, const WorklistFilter& f) {
  std::string key;
  for (const std::string& field :
       {caller, std::string(admin ? "1" : "0"), f.modality, f.member_id, f.priority, std::to_string(f.limit)}) {
    key += std::to_string(field.size()) + ":" + field;
  }
  return key;
}

std::shared_ptr<const WorklistPageCache::Page> WorklistPageCache::Find(const std::string& key, uint64_t version,
                                                                       int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.version != version || now_ms >= it->second.valid_until_ms) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.used);
  ++hits_;
  return it->second.page;
}

void WorklistPageCache::Store(const std::string& key, uint64_t version, int64_t valid_until_ms,
                              std::shared_ptr<const Page> page) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  // A slower reader of an older version must not replace a newer page.
  if (it != entries_.end() && it->second.version > version) return;
  if (it != entries_.end()) Erase(it);
  const size_t cost = Cost(key, *page);
  if (cost > max_bytes_) return;
  while (bytes_ + cost > max_bytes_ && !lru_.empty()) Erase(entries_.find(lru_.back()));
  lru_.push_front(key);
  entries_.emplace(key, Entry{version, valid_until_ms, std::move(page), cost, lru_.begin()});
  bytes_ += cost;
}

std::shared_ptr<const WorklistPageCache::Page> WorklistPageCache::FindOrRead(const std::string& key, uint64_t version,
                                                                             int64_t now_ms,
                                                                             const std::function<Read()>& read,
                                                                             bool* waited) {
  if (auto kept = Find(key, version, now_ms)) return kept;
  std::promise<Read> mine;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = flights_.find(key);
    if (it != flights_.end() && it->second.version == version) {
      std::shared_future<Read> other = it->second.done;
      lock.unlock();
      const Read& r = other.get();
      if (r.page && now_ms < r.valid_until_ms) {
        if (waited) *waited = true;
        return r.page;
      }
      return read().page;  // its read failed, or the time moved on past it: read apart
    }
    // A flight at another version is left to finish; this one takes its place.
    flights_[key] = Flight{version, mine.get_future().share()};
  }
  Read r;
  try {
    r = read();
  } catch (...) {
    mine.set_value(Read{});  // the waiters read apart
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = flights_.find(key); it != flights_.end() && it->second.version == version) flights_.erase(it);
    throw;
  }
  if (r.page) Store(key, version, r.valid_until_ms, r.page);
  mine.set_value(r);
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = flights_.find(key); it != flights_.end() && it->second.version == version) flights_.erase(it);
  return r.page;
}

void WorklistPageCache::Erase(std::unordered_map<std::string, Entry>::iterator it) {
  bytes_ -= it->second.bytes;
  lru_.erase(it->second.used);
  entries_.erase(it);
}

size_t WorklistPageCache::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}

size_t WorklistPageCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

size_t WorklistPageCache::pages() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace teleread
