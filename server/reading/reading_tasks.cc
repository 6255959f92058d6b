#include "server/reading/reading_tasks.h"

#include <algorithm>
#include <chrono>

#include "common/log.h"
#include "common/restarting.h"

namespace teleread {

ReadingTaskPromoter::ReadingTaskPromoter(Index& index, int quiet_period_seconds, TaskPolicy policy, Clock clock,
                                         std::function<void()> on_tick)
    : index_(index),
      quiet_ms_(int64_t{quiet_period_seconds} * 1000),
      policy_(std::move(policy)),
      clock_(std::move(clock)),
      on_tick_(std::move(on_tick)) {}

ReadingTaskPromoter::~ReadingTaskPromoter() { Stop(); }

void ReadingTaskPromoter::Start() {
  thread_ = std::thread([this] { RunRestarting("reading task promoter", [this] { Loop(); }); });
}

void ReadingTaskPromoter::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<int> ReadingTaskPromoter::RunOnce() {
  Result<int> created = index_.PromoteQuietStudies(clock_(), quiet_ms_, policy_);
  if (!created.ok()) {
    spdlog::error("reading tasks: {}", created.status().ToString());
  } else if (created.value() > 0) {
    spdlog::info("{} stud{} complete: queued for reading", created.value(), created.value() == 1 ? "y" : "ies");
  }
  return created;
}

void ReadingTaskPromoter::Loop() {
  // A tenth of the quiet period keeps the completion time within 10% of the target.
  auto interval = std::chrono::milliseconds(std::clamp<int64_t>(quiet_ms_ / 10, 100, 1000));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    (void)RunOnce();
    if (on_tick_) on_tick_();
    lock.lock();
    cv_.wait_for(lock, interval, [this] { return stopping_; });
  }
}

}  // namespace teleread
