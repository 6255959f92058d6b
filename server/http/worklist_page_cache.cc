#include "server/http/worklist_page_cache.h"

#include <algorithm>
#include <exception>

#include "common/log.h"

namespace teleread {
namespace {

// What a kept page costs: its JSON as allocated, its deflate blocks at their bound (made later, on
// the first gzip caller, and never larger: see DeflatePart), the key twice (map and list), the nodes.
size_t Cost(const std::string& key, const WorklistPageCache::Page& page) {
  return 2 * key.size() + page.items_json.capacity() + DeflatedBound(page.items_json.size()) + 200;
}

}  // namespace

const DeflatedPart& WorklistPageCache::Page::Gzip() const {
  std::call_once(deflate_once_, [this] {
    gzip_ = DeflatePart(items_json);
    deflated_.store(true);
  });
  return gzip_;
}

std::shared_ptr<const WorklistPageCache::Page> WorklistPageCache::Page::Make(std::string items_json, size_t rows) {
  auto page = std::make_shared<Page>();
  page->items_json = std::move(items_json);
  page->items_json.shrink_to_fit();  // json::dump grew it by doubling: up to twice what it holds
  page->rows = rows;
  return page;
}

std::string WorklistPageCache::Key(const WorklistFilter& f) {
  std::string key;
  auto add = [&key](const std::string& field) { key += std::to_string(field.size()) + ":" + field; };
  for (const std::string& field : {f.modality, f.member_id, f.priority, std::to_string(f.limit)}) add(field);
  for (const std::vector<std::string>* list : {&f.readable_modalities, &f.readable_members}) {
    add(std::to_string(list->size()));
    for (const std::string& item : *list) add(item);
  }
  return key;
}

std::shared_ptr<const WorklistPageCache::Page> WorklistPageCache::FindLocked(const std::string& key, uint64_t version,
                                                                             int64_t now_ms, bool count_hit) {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.version != version || now_ms >= it->second.valid_until_ms) return nullptr;
  if (!count_hit) return it->second.page;
  lru_.splice(lru_.begin(), lru_, it->second.used);
  ++hits_;
  return it->second.page;
}

void WorklistPageCache::NoteAsked(const std::string& key, const std::function<std::function<Read()>()>& make_read) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = asked_.find(key);
  if (it == asked_.end()) {
    if (asked_.size() >= kMaxAsked) asked_.clear();
    it = asked_.emplace(key, Asked{make_read(), false, 0}).first;
  }
  it->second.since_read_ahead = true;
  it->second.last = ++asked_count_;
}

size_t WorklistPageCache::ReadAhead(uint64_t version, int64_t now_ms, bool* more) {
  std::vector<std::pair<std::string, std::function<Read()>>> due;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::pair<uint64_t, const std::string*>> stale;  // (when asked last, key)
    for (const auto& [key, asked] : asked_) {
      if (asked.since_read_ahead && !FindLocked(key, version, now_ms, false)) stale.push_back({asked.last, &key});
    }
    std::sort(stale.begin(), stale.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    if (more) *more = stale.size() > kMaxReadAhead;
    if (stale.size() > kMaxReadAhead) stale.resize(kMaxReadAhead);
    for (const auto& [last, key] : stale) {
      (void)last;
      Asked& asked = asked_.at(*key);
      asked.since_read_ahead = false;  // read again after the next change only if asked meanwhile
      due.push_back({*key, asked.read});
    }
  }
  size_t stored = 0;
  for (const auto& [key, read_ref] : due) {
    const std::function<Read()>& read = read_ref;  // a structured binding cannot be captured (clang 14)
    // Counted only when this read ran and its page is the one kept (not a caller's read waited
    // on, nor a failed read, nor one a newer page overtook).
    std::shared_ptr<const Page> mine;
    try {
      (void)FindOrRead(key, version, now_ms, [&read, &mine] {
        Read r = read();
        mine = r.page;
        return r;
      });
    } catch (const std::exception& e) {  // e.g. no memory: this page's callers read for themselves
      spdlog::warn("worklist page not read ahead: {}", e.what());
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (mine && it != entries_.end() && it->second.page == mine) ++stored;
  }
  return stored;
}

std::shared_ptr<const WorklistPageCache::Page> WorklistPageCache::Find(const std::string& key, uint64_t version,
                                                                       int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  return FindLocked(key, version, now_ms);
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

std::shared_ptr<const WorklistPageCache::Page> WorklistPageCache::ReadAndStore(const std::string& key, uint64_t version,
                                                                               const std::function<Read()>& read) {
  Read r = read();
  if (r.page) Store(key, version, r.valid_until_ms, r.page);
  return r.page;
}

std::shared_ptr<const WorklistPageCache::Page> WorklistPageCache::FindOrRead(const std::string& key, uint64_t version,
                                                                             int64_t now_ms,
                                                                             const std::function<Read()>& read,
                                                                             bool* waited) {
  enum class Role { kLead, kWait, kApart } role = Role::kApart;
  std::shared_future<Read> other;
  std::promise<Read> mine;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Looked up under the flights' lock: a read that landed since the caller's miss is served.
    if (auto kept = FindLocked(key, version, now_ms)) return kept;
    auto it = flights_.find(key);
    if (it != flights_.end() && it->second.version == version) {
      role = Role::kWait;
      other = it->second.done;
      ++waiting_;
    } else if (it == flights_.end() || it->second.version < version) {
      // A flight at an older version is left to finish; its page will not replace this one's.
      role = Role::kLead;
      flights_[key] = Flight{version, mine.get_future().share()};
    }  // else a read of a newer version is under way: this older caller reads apart
  }
  if (role == Role::kApart) return ReadAndStore(key, version, read);
  if (role == Role::kWait) {
    const bool ready = other.wait_for(wait_) == std::future_status::ready;
    {
      std::lock_guard<std::mutex> lock(mu_);
      --waiting_;
    }
    if (ready) {
      const Read& r = other.get();
      if (r.page && now_ms < r.valid_until_ms) {
        if (waited) *waited = true;
        return r.page;
      }
    }
    // Its read failed, is slow, or the time moved on past it: read apart.
    return ReadAndStore(key, version, read);
  }
  // The lead: whatever happens (a read or Store that throws included), the waiters get an answer
  // (an empty one: they read apart) and the flight ends, so that later misses do not join it.
  struct Landing {
    WorklistPageCache& cache;
    const std::string& key;
    uint64_t version;
    std::promise<Read>& promise;
    Read result;
    ~Landing() {
      promise.set_value(result);
      std::lock_guard<std::mutex> lock(cache.mu_);
      auto it = cache.flights_.find(key);
      if (it != cache.flights_.end() && it->second.version == version) cache.flights_.erase(it);
    }
  } landing{*this, key, version, mine, {}};
  Read r = read();
  if (r.page) Store(key, version, r.valid_until_ms, r.page);
  landing.result = r;
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

size_t WorklistPageCache::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_;
}

size_t WorklistPageCache::pages() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace teleread
