#pragma once
// The DICOM upper-layer listener (C-ECHO, C-STORE, and query/retrieve via qr_scp): binds the
// configured address, accepts on its own thread and
// runs each association on a fixed pool of worker threads (no thread per association, no
// leak). A connection that finds every worker busy is rejected with "local limit exceeded".
// DCMTK is confined to dicom_listener.cc.
//
// Thread-safety: Start and Stop from one controlling thread.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/config.h"
#include "server/caller_policy.h"
#include "server/ingest.h"
#include "server/query.h"

namespace teleread {

struct ListenerStats {
  std::atomic<uint64_t> associations{0};
  std::atomic<uint64_t> rejected{0};
  std::atomic<uint64_t> stored{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> bytes{0};
};

class DicomListener {
 public:
  DicomListener(const Config& config, const CallerPolicy& policy, Ingest& ingest, ObjectStore& store,
                const QueryEngine& engine);
  ~DicomListener();  // stops if running
  DicomListener(const DicomListener&) = delete;
  DicomListener& operator=(const DicomListener&) = delete;

  // Binds and starts accepting. Fails when the address is taken or cannot be bound.
  Status Start();
  // Stops accepting, lets running associations finish (bounded by the DIMSE timeout), joins.
  void Stop();
  uint16_t port() const { return port_; }
  const ListenerStats& stats() const { return stats_; }

  struct Network;  // DCMTK's network object and transport, defined in the .cc

 private:
  void AcceptLoop();
  void WorkerLoop();
  void RunConnection(int fd);
  void RejectBusy(int fd);

  const Config& config_;
  const CallerPolicy& policy_;
  Ingest& ingest_;
  ObjectStore& store_;
  const QueryEngine& engine_;
  ListenerStats stats_;

  std::unique_ptr<Network> network_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  uint16_t port_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<int> pending_;  // accepted sockets waiting for a worker; guarded by mu_
  int idle_workers_ = 0;     // guarded by mu_
  bool stopping_ = false;    // guarded by mu_

  std::thread acceptor_;
  std::vector<std::thread> workers_;
};

}  // namespace teleread
