#pragma once
// Turns studies into reading tasks once no instance has arrived for the quiet period.
// State lives in the index, so a restart neither loses nor repeats a task.
//
// Thread-safety: Start/Stop from the controlling thread; the work runs on its own thread.
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "common/clock.h"
#include "server/store/index.h"

namespace teleread {

class ReadingTaskPromoter {
 public:
  // `on_tick` runs after each promotion pass (the worklist's lease expiry).
  ReadingTaskPromoter(Index& index, int quiet_period_seconds, TaskPolicy policy, Clock clock,
                      std::function<void()> on_tick = {});
  ~ReadingTaskPromoter();
  void Start();
  void Stop();
  // One pass, for tests and for start-up.
  Result<int> RunOnce();

 private:
  void Loop();

  Index& index_;
  int64_t quiet_ms_;
  TaskPolicy policy_;
  Clock clock_;
  std::function<void()> on_tick_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace teleread
