#include "server/reading/critical_results.h"

#include <algorithm>
#include <chrono>

#include "common/log.h"

namespace teleread {

CriticalResults::CriticalResults(const Config& config, CriticalStore& store, CriticalNotifier* notifier, Clock clock)
    : config_(config),
      store_(store),
      notifier_(notifier),
      clock_(std::move(clock)),
      ack_ms_(int64_t{config.reading.critical_ack_minutes} * 60'000) {}

CriticalResults::~CriticalResults() { Stop(); }

void CriticalResults::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void CriticalResults::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CriticalResults::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

Result<std::vector<CriticalResult>> CriticalResults::List(const CriticalQuery& query) const {
  return store_.List(query);
}

Result<CriticalResults::Rows> CriticalResults::Unacknowledged(const std::string& signer) const {
  const uint64_t version = store_.Version();  // before the read: a change during it moves it past
  const int64_t now = clock_();
  {
    std::lock_guard<std::mutex> lock(kept_mu_);
    if (auto it = kept_.find(signer); it != kept_.end() && it->second.version == version && now >= it->second.read_ms &&
                                      now < it->second.read_ms + kKeptMs) {
      return it->second.rows;
    }
    ++reads_;
  }
  Result<std::vector<CriticalResult>> read = store_.List(CriticalQuery{"", signer, "unacknowledged", 100});
  if (!read.ok()) return read.status();
  Rows rows = std::make_shared<const std::vector<CriticalResult>>(std::move(read.value()));
  std::lock_guard<std::mutex> lock(kept_mu_);
  if (kept_.size() >= kMaxKept) kept_.clear();
  Kept& k = kept_[signer];
  if (!k.rows || k.version <= version) k = Kept{version, now, rows};  // never over a newer read
  return rows;
}

size_t CriticalResults::unacknowledged_reads() const {
  std::lock_guard<std::mutex> lock(kept_mu_);
  return reads_;
}

Status CriticalResults::Acknowledge(const std::string& sop, const std::string& member_id, const std::string& by,
                                    const std::string& via) {
  if (by.find_first_not_of(" \t") == std::string::npos) {
    return Status::InvalidArgument("name the person who took the call");
  }
  if (by.size() > 200) return Status::InvalidArgument("the name is longer than 200 characters");
  Status s = store_.Acknowledge(sop, member_id, by, via, clock_());
  if (s.ok()) spdlog::info("critical result {} acknowledged by {} for {}", sop, via, member_id);
  return s;
}

int CriticalResults::Escalate() {
  Result<std::vector<CriticalResult>> escalated = store_.Escalate(clock_() - ack_ms_, clock_());
  if (!escalated.ok()) {
    spdlog::error("critical results: cannot escalate: {}", escalated.status().message());
    return 0;
  }
  for (const CriticalResult& c : escalated.value()) {
    spdlog::error(
        "critical result {} (study {}, signed by {}) is not acknowledged by {} after {} min: call the "
        "hospital",
        c.sop_instance_uid, c.study_instance_uid, c.signer, c.member_id, config_.reading.critical_ack_minutes);
  }
  return static_cast<int>(escalated->size());
}

Result<CriticalCounts> CriticalResults::Counts() const { return store_.Counts(clock_() - ack_ms_); }

int64_t CriticalResults::Backoff(int64_t attempts) {
  const int64_t base = int64_t{config_.reading.delivery_retry_seconds} * 1000;
  const int64_t cap = int64_t{config_.reading.delivery_retry_max_seconds} * 1000;
  int64_t delay = base;
  for (int64_t i = 1; i < attempts && delay < cap; ++i) delay *= 2;
  delay = std::min(delay, cap);
  std::uniform_int_distribution<int64_t> jitter(-delay / 5, delay / 5);
  return std::max<int64_t>(1, delay + jitter(rng_));
}

void CriticalResults::SendDue() {
  next_webhook_ms_ = 0;
  if (!notifier_) return;
  Result<std::vector<CriticalResult>> due = store_.DueWebhooks(clock_(), 16, &next_webhook_ms_);
  if (!due.ok()) {
    spdlog::error("critical results: cannot read the index: {}", due.status().message());
    return;
  }
  for (const CriticalResult& c : due.value()) {
    const Member* member = nullptr;
    for (const Member& m : config_.members) {
      if (m.id == c.member_id) member = &m;
    }
    std::string error = !member || member->critical_webhook.empty() ? "the member has no critical_webhook any more"
                                                                    : notifier_->Notify(*member, c);
    const int64_t attempts = c.webhook_attempts + 1;
    const bool dead = !error.empty() && attempts >= config_.reading.delivery_max_attempts;
    const int64_t next = error.empty() || dead ? 0 : clock_() + Backoff(attempts);
    if (error.empty()) {
      spdlog::info("critical result {} notified to {} by webhook", c.sop_instance_uid, c.member_id);
    } else {
      spdlog::warn("critical result {}: webhook to {} failed (attempt {}): {}", c.sop_instance_uid, c.member_id,
                   attempts, error);
    }
    if (Status s = store_.WebhookAttempted(c.id, error, dead, next, clock_()); !s.ok()) {
      spdlog::error("critical result {}: cannot record the webhook attempt: {}", c.sop_instance_uid, s.message());
    }
    if (next > 0 && (next_webhook_ms_ == 0 || next < next_webhook_ms_)) next_webhook_ms_ = next;
  }
}

void CriticalResults::Loop() {
  for (;;) {
    SendDue();
    (void)Escalate();
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return;
    auto wait = std::chrono::milliseconds(1000);
    if (next_webhook_ms_ > 0) {
      wait = std::min(wait, std::chrono::milliseconds(std::max<int64_t>(1, next_webhook_ms_ - clock_())));
    }
    cv_.wait_for(lock, wait, [this] { return stopping_ || woken_; });
    woken_ = false;
    if (stopping_) return;
  }
}

}  // namespace teleread
