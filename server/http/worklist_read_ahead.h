#pragma once
// Reads the kept worklist pages again right after a change (WorklistPageCache::ReadAhead), on a
// thread of its own: when a claim or a new task moves the version, every workstation's next
// request would otherwise miss at once and wait on one read that competes for the CPU with all
// of them. Woken by the index after the commit of each change, once the version has moved
// (Index::OnTasksChange), it reads once the version has then held for one poll (a burst of
// claims is read after, not during), and only pages asked for since their last read ahead, so
// pages nobody looks at cost nothing after the first change. More pages due than one
// ReadAhead reads (kMaxReadAhead) are read at the next polls, while the version holds. Idle (no
// change for `armed`), it sleeps until woken.
//
// Thread-safety: constructed and destroyed by the owner; the thread is joined by the destructor.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "common/status.h"
#include "server/http/worklist_page_cache.h"

namespace teleread {

class WorklistReadAhead {
 public:
  static constexpr std::chrono::milliseconds kDefaultPoll{5};
  static constexpr std::chrono::milliseconds kDefaultArmed{1000};
  // Called with a function to call on each change (Worklist::OnChange), and with null by the
  // destructor, before it joins. A refusal (another listener is set) is thrown by the
  // constructor as std::logic_error: two read-aheads on one index is a mistake of the wiring.
  using Subscribe = std::function<Status(std::function<void()>)>;
  // `version` and `now_ms` as the route reads them (Worklist::Version, Worklist::Now); all
  // outlive this. Polls the version every `poll` until it has not moved for `armed`.
  WorklistReadAhead(WorklistPageCache& pages, std::function<uint64_t()> version, std::function<int64_t()> now_ms,
                    Subscribe subscribe, std::chrono::milliseconds poll = kDefaultPoll,
                    std::chrono::milliseconds armed = kDefaultArmed);
  ~WorklistReadAhead();
  WorklistReadAhead(const WorklistReadAhead&) = delete;
  WorklistReadAhead& operator=(const WorklistReadAhead&) = delete;

  void Wake();                // a change has committed
  size_t pages_read() const;  // pages read ahead and kept so far
  size_t polls() const;       // times the thread looked at the version (idle: none)

 private:
  void Loop();

  WorklistPageCache& pages_;
  const std::function<uint64_t()> version_;
  const std::function<int64_t()> now_ms_;
  const Subscribe subscribe_;
  const std::chrono::milliseconds poll_, armed_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;         // guarded by mu_
  bool woken_ = false;            // guarded by mu_
  size_t read_ = 0;               // guarded by mu_
  size_t polls_ = 0;              // guarded by mu_
  const uint64_t start_version_;  // taken by the constructor: a change after it is read ahead
  std::thread thread_;            // last: started once the rest is set
};

}  // namespace teleread
