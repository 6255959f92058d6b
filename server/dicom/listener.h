#pragma once
// The DICOM upper-layer listener (C-ECHO, C-STORE, and query/retrieve via qr_scp): binds the
// configured address, accepts on its own thread and
// runs each association on a fixed pool of worker threads (no thread per association, no
// leak). A connection that finds every worker busy is rejected with "local limit exceeded", and
// so is one beyond its member's own limit. With [dicom_tls], TLS is served on its own port or on
// the DICOM port itself; the worker does the handshake, so a slow one holds up nobody else.
//
// Thread-safety: Start and Stop from one controlling thread.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/config.h"
#include "server/dicom/association.h"
#include "server/reading/caller_policy.h"
#include "server/reading/ingest.h"
#include "server/reading/refusal_audit.h"
#include "server/store/query.h"

namespace teleread {

class CertificateExpiry;
class DicomTls;

class DicomListener {
 public:
  // `tls` (may be null: no DICOM TLS) and `expiry` outlive the listener.
  DicomListener(const Config& config, const CallerPolicy& policy, Ingest& ingest, ObjectStore& store,
                const QueryEngine& engine, const DicomTls* tls = nullptr, CertificateExpiry* expiry = nullptr,
                AuditLog* audit = nullptr, StorageCommitment* commitment = nullptr);
  ~DicomListener();  // stops if running
  DicomListener(const DicomListener&) = delete;
  DicomListener& operator=(const DicomListener&) = delete;

  // Binds and starts accepting. Fails when the address is taken or cannot be bound.
  Status Start();
  // Stops accepting, lets running associations finish (bounded by the DIMSE timeout), joins.
  void Stop();
  uint16_t port() const { return port_; }
  uint16_t tls_port() const { return tls_port_; }  // 0 without [dicom_tls]
  const ListenerStats& stats() const { return stats_; }

  struct Network;  // DCMTK's network object and transport, defined in the .cc

 private:
  void AcceptLoop();
  void WorkerLoop();
  struct Accepted {
    int fd;
    bool tls_port;  // accepted on the separate TLS port
    std::string address;
  };
  void RunConnection(Accepted connection);
  // Rejects with "local limit exceeded" once the request is read; over TLS (`tls_deadline` set)
  // after the handshake, which must end by then: on its own thread.
  void RejectBusy(int fd, std::optional<std::chrono::steady_clock::time_point> tls_deadline = std::nullopt);
  Status Listen(const std::string& address, uint16_t port, int& fd, uint16_t& bound_port);

  const Config& config_;
  const CallerPolicy& policy_;
  Ingest& ingest_;
  ObjectStore& store_;
  const QueryEngine& engine_;
  const DicomTls* tls_;
  CertificateExpiry* expiry_;
  AuditLog* audit_;
  StorageCommitment* commitment_;  // nullptr: no storage commitment
  RefusalAudit tls_refusals_;      // refused TLS connections: one audit entry per address and minute
  ListenerStats stats_;
  MemberSlots slots_;

  std::unique_ptr<Network> network_;
  int listen_fd_ = -1;
  int tls_listen_fd_ = -1;  // the separate TLS port, when there is one
  uint16_t tls_port_ = 0;
  int wake_pipe_[2] = {-1, -1};
  uint16_t port_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Accepted> pending_;            // accepted sockets waiting for a worker; guarded by mu_
  int idle_workers_ = 0;                    // guarded by mu_
  std::map<std::string, int> per_address_;  // connections pending or served, by address; guarded by mu_
  bool stopping_ = false;                   // guarded by mu_

  std::thread acceptor_;
  std::vector<std::thread> workers_;
};

}  // namespace teleread
