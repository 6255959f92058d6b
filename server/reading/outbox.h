#pragma once
// The delivery outbox: signed reports on their way back to the member hospital. Rows live in
// SQLite (table deliveries), so a restart loses nothing; one thread sends them by C-STORE to
// the member's configured delivery AE. A report keeps its SOP Instance UID on every attempt,
// so however often it is re-sent the member holds one copy; and it is not re-sent at all when
// the member answers a C-FIND saying it holds the report already (an earlier attempt reached it
// but its success was never recorded: a crash, a lost response). Failures retry with exponential
// backoff and jitter; after the configured number of attempts a row is "dead" until an admin
// retries it.
//
// Thread-safety: all public methods may be called from any thread.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/config.h"
#include "server/store/delivery_store.h"
#include "server/store/object_store.h"

namespace teleread {

// What a delivery sends: one stored report.
struct OutgoingReport {
  std::string file;
  std::string sop_class_uid;
  std::string transfer_syntax_uid;
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string sop_instance_uid;
};

struct SendResult {
  std::string error;          // empty: the member stored it (or held it already)
  bool already_held = false;  // the member said it holds the report; nothing was sent
};

// The protocol side of delivery (DICOM C-STORE in dicom/report_sender.h).
class ReportSender {
 public:
  virtual ~ReportSender() = default;
  // Opens an association to `target` and calls `begin` once it is open, before anything is sent
  // (a failed `begin` sends nothing and is the error). With `may_hold`, first asks the member
  // whether it holds the report, and sends nothing if it does.
  virtual SendResult Send(const DeliveryTarget& target, const OutgoingReport& report, bool may_hold,
                          const std::function<Status()>& begin) = 0;
};

class DeliveryOutbox {
 public:
  // `sender` outlives the outbox.
  DeliveryOutbox(const Config& config, DeliveryStore& deliveries, const ObjectStore& store, ReportSender& sender,
                 Clock clock);
  ~DeliveryOutbox();  // stops the thread

  void Start();
  void Stop();
  // Something was queued: look now rather than at the next timer.
  void Wake();

  // Rows by state ("" for all), newest first; `study_uid` narrows to one study when non-empty.
  Result<std::vector<DeliveryRow>> List(const std::string& state, const std::string& study_uid, int limit) const;
  // A dead (or pending) row is tried again at once, its attempts counted from zero.
  // NotFound for an unknown id, Conflict when already delivered.
  Status Retry(int64_t id, const std::string& actor);
  Result<DeliveryCounts> Counts() const;

  // One round of the delivery thread: every due row tried once (a member that fails, once per
  // round). For tests, on an outbox that was not started.
  struct Round {
    size_t due = 0;       // rows that were due
    int64_t next_ms = 0;  // when the next row not yet due is; 0: none
  };
  Round RunRound();

 private:
  void Loop();
  // One attempt; records the outcome. Whether the member stored it.
  bool Attempt(const DeliveryRow& row);
  int64_t Backoff(int64_t attempts);

  const Config& config_;
  DeliveryStore& deliveries_;
  const ObjectStore& store_;
  ReportSender& sender_;
  Clock clock_;
  std::mt19937_64 rng_{std::random_device{}()};  // used by the delivery thread only
  // An outcome of this round could not be written: the row is still due, but trying it again at
  // once would only open association after association to the member.
  bool unrecorded_ = false;  // delivery thread only

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  bool woken_ = false;     // guarded by mu_
  std::thread thread_;
};

}  // namespace teleread
