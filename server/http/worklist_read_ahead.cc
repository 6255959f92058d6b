#include "server/http/worklist_read_ahead.h"

#include <exception>
#include <stdexcept>

#include "common/log.h"

namespace teleread {

WorklistReadAhead::WorklistReadAhead(WorklistPageCache& pages, std::function<uint64_t()> version,
                                     std::function<int64_t()> now_ms, Subscribe subscribe,
                                     std::chrono::milliseconds poll, std::chrono::milliseconds armed)
    : pages_(pages),
      version_(std::move(version)),
      now_ms_(std::move(now_ms)),
      subscribe_(std::move(subscribe)),
      poll_(poll),
      armed_(armed),
      start_version_(version_()),
      thread_([this] { Loop(); }) {
  if (!subscribe_) return;
  if (Status s = subscribe_([this] { Wake(); }); !s.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
    throw std::logic_error("worklist read-ahead not subscribed: " + s.message());
  }
}

WorklistReadAhead::~WorklistReadAhead() {
  if (subscribe_) (void)subscribe_(nullptr);  // no Wake once this returns
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void WorklistReadAhead::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

size_t WorklistReadAhead::pages_read() const {
  std::lock_guard<std::mutex> lock(mu_);
  return read_;
}

size_t WorklistReadAhead::polls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return polls_;
}

void WorklistReadAhead::Loop() {
  using Clock = std::chrono::steady_clock;
  // From the version at construction, not at the thread's start: a change made before the
  // thread first ran is read ahead too (armed from the start for that).
  uint64_t seen = start_version_;
  uint64_t done = seen;
  Clock::time_point armed_until = Clock::now() + armed_;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (Clock::now() >= armed_until) {
      cv_.wait(lock, [this] { return stopping_ || woken_; });  // idle: until a change
    } else {
      cv_.wait_for(lock, poll_, [this] { return stopping_; });
    }
    if (stopping_) return;
    ++polls_;
    // Woken once the version moved: poll until it has held.
    if (woken_) armed_until = Clock::now() + armed_;
    woken_ = false;
    const uint64_t now = version_();
    if (now != seen) armed_until = Clock::now() + armed_;
    // Read when the version held for a whole poll: during a burst of changes each read would be
    // stale before it landed.
    if (now == seen && now != done) {
      lock.unlock();
      size_t n = 0;
      bool more = false;
      try {
        n = pages_.ReadAhead(now, now_ms_(), &more);
      } catch (const std::exception& e) {  // e.g. no memory: the callers read for themselves
        spdlog::warn("worklist pages not read ahead: {}", e.what());
      }
      lock.lock();
      read_ += n;
      // Past kMaxReadAhead: the rest at the next poll, if the version still holds.
      if (more) {
        armed_until = Clock::now() + armed_;
      } else {
        done = now;
      }
    }
    seen = now;
  }
}

}  // namespace teleread
