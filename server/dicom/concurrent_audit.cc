#include "server/dicom/concurrent_audit.h"

namespace teleread {

ConcurrentAudit::~ConcurrentAudit() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !busy_; });
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ConcurrentAudit::Start(AuditEntry entry) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !busy_; });  // a caller that skipped Wait
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
  pending_ = std::move(entry);
  result_.reset();
  busy_ = true;
  cv_.notify_all();
}

Status ConcurrentAudit::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !busy_; });
  if (!result_) return Status::InvalidArgument("no audit entry was started");
  Status s = std::move(*result_);
  result_.reset();
  return s;
}

void ConcurrentAudit::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || pending_.has_value(); });
    if (!pending_) return;  // stopping, nothing started
    AuditEntry entry = std::move(*pending_);
    pending_.reset();
    lock.unlock();
    Status s = log_.Append(entry);
    lock.lock();
    result_ = std::move(s);
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace teleread
