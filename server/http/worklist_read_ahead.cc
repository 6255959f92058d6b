#include "server/http/worklist_read_ahead.h"

namespace teleread {

WorklistReadAhead::WorklistReadAhead(WorklistPageCache& pages, std::function<uint64_t()> version,
                                     std::function<int64_t()> now_ms, std::chrono::milliseconds poll)
    : pages_(pages),
      version_(std::move(version)),
      now_ms_(std::move(now_ms)),
      poll_(poll),
      start_version_(version_()),
      thread_([this] { Loop(); }) {}

WorklistReadAhead::~WorklistReadAhead() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

size_t WorklistReadAhead::pages_read() const {
  std::lock_guard<std::mutex> lock(mu_);
  return read_;
}

void WorklistReadAhead::Loop() {
  // From the version at construction, not at the thread's start: a change made before the
  // thread first ran is read ahead too.
  uint64_t seen = start_version_;
  uint64_t done = seen;
  std::unique_lock<std::mutex> lock(mu_);
  while (!cv_.wait_for(lock, poll_, [this] { return stopping_; })) {
    const uint64_t now = version_();
    // Read when the version held for a whole poll: during a burst of changes each read would be
    // stale before it landed.
    if (now == seen && now != done) {
      lock.unlock();
      const size_t n = pages_.ReadAhead(now, now_ms_());
      lock.lock();
      read_ += n;
      done = now;
    }
    seen = now;
  }
}

}  // namespace teleread
