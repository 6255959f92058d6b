#pragma once
// Critical results as the workflow sees them: the member acknowledges by name, an unacknowledged
// one escalates after [reading] critical_ack_minutes (error log, metrics, admins' and signer's
// view), and members with a webhook are notified through it, retried like report deliveries.
// The record itself is opened by the report's acceptance (ReportStore::Record).
//
// Thread-safety: every method may be called from any thread; Start/Stop from the controlling
// thread. The webhook and escalation work runs on the service's own thread.
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/config.h"
#include "server/store/critical_store.h"

namespace teleread {

// The webhook transport (HTTPS with the centre's client certificate), implemented by http/.
class CriticalNotifier {
 public:
  virtual ~CriticalNotifier() = default;
  // Tells `member` about `result` at member.critical_webhook; empty when the receiver answered
  // 2xx, else why not.
  virtual std::string Notify(const Member& member, const CriticalResult& result) = 0;
};

class CriticalResults {
 public:
  // `notifier` may be null (no webhooks sent) and outlives this.
  CriticalResults(const Config& config, CriticalStore& store, CriticalNotifier* notifier, Clock clock);
  ~CriticalResults();
  void Start();
  void Stop();
  void Wake();  // a report was accepted: a webhook may be due

  Result<std::vector<CriticalResult>> List(const CriticalQuery& query) const;
  // The unacknowledged results `signer` signed (the 100 newest), as List would read them, for
  // every worklist answer of theirs: kept per signer with the version they were read at
  // (CriticalStore::Version, taken before the read), and read again once it moved, so a result
  // opened or acknowledged is in the very next answer; read again also once kept kKeptMs, for a
  // change made to the index from outside the server, which moves no version. Errors are not kept.
  static constexpr int64_t kKeptMs = 30'000;
  using Rows = std::shared_ptr<const std::vector<CriticalResult>>;
  Result<Rows> Unacknowledged(const std::string& signer) const;
  size_t unacknowledged_reads() const;  // how many times Unacknowledged read the index
  // `by` is the person at the member who took the call, `via` the member identity recording it.
  // InvalidArgument without a name; NotFound / Conflict as CriticalStore::Acknowledge.
  Status Acknowledge(const std::string& sop_instance_uid, const std::string& member_id, const std::string& by,
                     const std::string& via);
  // Escalates what is unacknowledged past the limit and not escalated yet; how many.
  int Escalate();
  Result<CriticalCounts> Counts() const;
  // Whether an unacknowledged result opened at `opened_ms` is past the acknowledgement time.
  bool Overdue(int64_t opened_ms) const { return opened_ms <= clock_() - ack_ms_; }

 private:
  void Loop();
  void SendDue();
  int64_t Backoff(int64_t attempts);

  const Config& config_;
  CriticalStore& store_;
  CriticalNotifier* notifier_;
  Clock clock_;
  int64_t ack_ms_;
  std::mt19937_64 rng_{std::random_device{}()};  // the service's thread only
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;        // guarded by mu_
  bool woken_ = false;           // guarded by mu_
  int64_t next_webhook_ms_ = 0;  // the service's thread only
  std::thread thread_;

  struct Kept {
    uint64_t version = 0;
    int64_t read_ms = 0;  // when read (clock_): kept until read_ms + kKeptMs
    Rows rows;
  };
  static constexpr size_t kMaxKept = 4096;  // signers; past it the kept lists start over
  mutable std::mutex kept_mu_;
  mutable std::unordered_map<std::string, Kept> kept_;  // by signer; guarded by kept_mu_
  mutable size_t reads_ = 0;                            // guarded by kept_mu_
};

}  // namespace teleread
