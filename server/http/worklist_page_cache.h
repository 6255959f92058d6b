#pragma once
// The worklist pages served last, as JSON and as deflate blocks, so that a page asked for again
// before anything in it changed costs no SQL, no JSON and no compression. A page is kept with the
// task version it was read at (Worklist::Version) and the time its rows would first read
// differently (NextTimeChange); it is served only while both hold, so a claim, a release, a new
// task or a late instance is seen by the very next request. The key names every parameter the
// rows depend on, the caller's routing included but not the caller: the rows show nothing per
// caller (who claimed a task is shown to everyone alike; "mine" pages are not kept), so readers
// who read the same studies share a page. Each view is still audited per caller by the route.
// A page is deflated on its first caller that accepts gzip, once: plain callers never wait on it.
// Bounded by bytes (the deflated items counted at deflate's bound whether made yet or not); past
// the bound the least recently used pages go, one at a time.
//
// Thread-safety: all methods may be called from any thread.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "server/http/gzip_splice.h"
#include "server/store/task_store.h"

namespace teleread {

class WorklistPageCache {
 public:
  struct Page {
    std::string items_json;  // the "items" array
    size_t rows = 0;
    // items_json compressed: by the first caller that asks (others asking meanwhile wait for it),
    // then shared by every caller of the page that accepts gzip.
    const DeflatedPart& Gzip() const;
    bool deflated() const { return deflated_.load(); }

    static std::shared_ptr<const Page> Make(std::string items_json, size_t rows);

   private:
    mutable std::once_flag deflate_once_;
    mutable DeflatedPart gzip_;
    mutable std::atomic<bool> deflated_{false};
  };

  // 16 MB: a first page of 1,000 rows is ~1 MB, of 50 rows ~50 KB.
  static constexpr size_t kDefaultMaxBytes = size_t{16} << 20;
  // How long a caller waits for another's read of the page before reading it itself. A waiter
  // holds its handler thread either way, so this only bounds a read that is stuck, not one that is
  // slow: with 50 ms, reads slowed by a busy CPU made every waiter read too (the herd this prevents).
  static constexpr std::chrono::milliseconds kDefaultWait{2000};
  explicit WorklistPageCache(size_t max_bytes = kDefaultMaxBytes, std::chrono::milliseconds wait = kDefaultWait)
      : max_bytes_(max_bytes), wait_(wait) {}

  // The key of a kept first page: every filter the page's rows depend on, the routing
  // (readable_modalities, readable_members) included, each length-prefixed so that no two
  // different filters share one whatever text they hold. `filter` as the store reads it (limit
  // clamped, routing added: Worklist::Routed); its offset, state and claimed_by are not in it
  // (pages with those are not kept).
  static std::string Key(const WorklistFilter& filter);

  // The page kept under `key` if it was read at `version` and `now_ms` is before it changes.
  std::shared_ptr<const Page> Find(const std::string& key, uint64_t version, int64_t now_ms);
  // Keeps `page`, read at `version` (taken before the read), valid until `valid_until_ms`.
  void Store(const std::string& key, uint64_t version, int64_t valid_until_ms, std::shared_ptr<const Page> page);
  // A page read for keeping, and the time its rows would first read differently.
  struct Read {
    std::shared_ptr<const Page> page;  // null: not read (the index could not be read)
    int64_t valid_until_ms = 0;
  };
  // Find, and on a miss one read for everyone: the first caller to miss `key` at `version` runs
  // `read` and keeps its page; callers missing the same key and version meanwhile wait for that
  // page instead of reading it again each (after a task changed, every workstation asks at once).
  // A waiter whose time is past the read's validity, whose read failed, or that waited `wait` in
  // vain reads itself and keeps what it read. A read at a lower version than one under way does
  // not take its place. `waited`, when given, is set when the page came from another caller's read.
  std::shared_ptr<const Page> FindOrRead(const std::string& key, uint64_t version, int64_t now_ms,
                                         const std::function<Read()>& read, bool* waited = nullptr);
  // Reading ahead (worklist_read_ahead.h): after a change, the pages callers asked for are read
  // again before they ask, so that the workstations asking at once after it find the page kept
  // instead of all waiting on its read. `read` reads `key`'s page apart from any caller; the
  // route notes it with each request for a kept page (made only when the key has none yet).
  void NoteAsked(const std::string& key, const std::function<std::function<Read()>()>& make_read);
  // Reads again, at `version`, each page asked for since it was last read ahead that is not
  // current at `version` (at most kMaxReadAhead, most recently asked first; the others stay due),
  // as FindOrRead does: a caller missing it meanwhile waits for this read. How many pages this
  // call read and kept.
  // `more` (if given): set when pages were left due past kMaxReadAhead.
  static constexpr size_t kMaxReadAhead = 8;
  size_t ReadAhead(uint64_t version, int64_t now_ms, bool* more = nullptr);
  size_t hits() const;
  size_t bytes() const;
  size_t pages() const;
  size_t waiting() const;  // callers waiting for another's read now

 private:
  struct Entry {
    uint64_t version = 0;
    int64_t valid_until_ms = 0;
    std::shared_ptr<const Page> page;
    size_t bytes = 0;
    std::list<std::string>::iterator used;  // its place in `lru_`
  };
  // mu_ held:
  void Erase(std::unordered_map<std::string, Entry>::iterator it);
  std::shared_ptr<const Page> FindLocked(const std::string& key, uint64_t version, int64_t now_ms,
                                         bool count_hit = true);
  // Reads apart from any flight, and keeps what it read.
  std::shared_ptr<const Page> ReadAndStore(const std::string& key, uint64_t version, const std::function<Read()>& read);
  // A read under way.
  struct Flight {
    uint64_t version = 0;
    std::shared_future<Read> done;
  };

  const size_t max_bytes_;
  const std::chrono::milliseconds wait_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;   // guarded by mu_
  std::list<std::string> lru_;                       // keys, most recently used first; guarded by mu_
  std::unordered_map<std::string, Flight> flights_;  // reads under way, by key; guarded by mu_
  size_t bytes_ = 0;                                 // guarded by mu_
  size_t hits_ = 0;                                  // guarded by mu_
  size_t waiting_ = 0;                               // guarded by mu_
  // Keys asked for, for ReadAhead: how each is read, whether asked since its last read ahead,
  // and when asked last (a sequence number).
  struct Asked {
    std::function<Read()> read;
    bool since_read_ahead = false;
    uint64_t last = 0;
  };
  static constexpr size_t kMaxAsked = 256;        // keys; past it the notes start over
  std::unordered_map<std::string, Asked> asked_;  // guarded by mu_
  uint64_t asked_count_ = 0;                      // guarded by mu_
};

}  // namespace teleread
