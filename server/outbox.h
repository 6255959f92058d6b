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

#include "common/config.h"
#include "server/index.h"
#include "server/object_store.h"

namespace teleread {

struct DeliveryRow {
  int64_t id = 0;
  std::string sop_instance_uid;
  std::string study_instance_uid;
  std::string member_id;
  std::string state;  // pending, delivered, dead
  int64_t attempts = 0;
  int64_t next_attempt_ms = 0;
  int64_t created_ms = 0;
  int64_t delivered_ms = 0;
  std::string last_error;
  int64_t last_attempt_ms = 0;  // when an attempt last began to send; 0: never sent
};

struct DeliveryCounts {
  int64_t pending = 0, delivered = 0, dead = 0;
  int64_t oldest_pending_ms = 0;  // created_ms of the oldest pending row; 0 when none
};

class DicomTls;

class DeliveryOutbox {
 public:
  using Clock = std::function<int64_t()>;
  // `tls` (may be null: no DICOM TLS) outlives the outbox.
  DeliveryOutbox(const Config& config, Index& index, const ObjectStore& store, Clock clock,
                 const DicomTls* tls = nullptr);
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

 private:
  void Loop();
  // One attempt; records the outcome. Whether the member stored it.
  bool Attempt(const DeliveryRow& row);
  // Records that `row` is about to be sent on an open association.
  Status BeginAttempt(const DeliveryRow& row);
  int64_t Backoff(int64_t attempts);

  const Config& config_;
  Index& index_;
  const ObjectStore& store_;
  Clock clock_;
  const DicomTls* tls_;
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
