#pragma once
// Reads the kept worklist pages again right after a change (WorklistPageCache::ReadAhead), on a
// thread of its own: when a claim or a new task moves the version, every workstation's next
// request would otherwise miss at once and wait on one read that competes for the CPU with all
// of them. It reads once the version has held for one poll (a burst of claims is read after, not
// during), and only pages asked for since their last read ahead, so pages nobody looks at cost
// nothing after the first change.
//
// Thread-safety: constructed and destroyed by the owner; the thread is joined by the destructor.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "server/http/worklist_page_cache.h"

namespace teleread {

class WorklistReadAhead {
 public:
  static constexpr std::chrono::milliseconds kDefaultPoll{5};
  // `version` and `now_ms` as the route reads them (Worklist::Version, Worklist::Now); all three
  // outlive this.
  WorklistReadAhead(WorklistPageCache& pages, std::function<uint64_t()> version, std::function<int64_t()> now_ms,
                    std::chrono::milliseconds poll = kDefaultPoll);
  ~WorklistReadAhead();
  WorklistReadAhead(const WorklistReadAhead&) = delete;
  WorklistReadAhead& operator=(const WorklistReadAhead&) = delete;

  size_t pages_read() const;  // pages read ahead so far

 private:
  void Loop();

  WorklistPageCache& pages_;
  const std::function<uint64_t()> version_;
  const std::function<int64_t()> now_ms_;
  const std::chrono::milliseconds poll_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;         // guarded by mu_
  size_t read_ = 0;               // guarded by mu_
  const uint64_t start_version_;  // taken by the constructor: a change after it is read ahead
  std::thread thread_;            // last: started once the rest is set
};

}  // namespace teleread
