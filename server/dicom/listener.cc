#include "server/dicom/listener.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcostrmf.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dcmlayer.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/ofstd/ofstd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <iterator>
#include <optional>
#include <system_error>

#include "common/log.h"
#include "server/dicom/dicom_tls.h"
#include "server/dicom/dimse_status.h"
#include "server/dicom/qr_scp.h"
#include "server/dicom/quick_ack.h"
#include "server/dicom/socket_peek.h"
#include "server/dicom/tls_accept.h"
#include "server/store/direct_file.h"

namespace teleread {

namespace {

// dcmExternalSocketHandle is one process-wide variable read inside ASC_receiveAssociation, so
// handing a socket to DCMTK is serialised. It is brief: the request is already buffered.
std::mutex g_handoff_mu;

static_assert(kMinPduBytes == ASC_MINIMUMPDUSIZE && kMaxPduBytes == ASC_MAXIMUMPDUSIZE,
              "the config's max_pdu_bytes range must be the one DCMTK accepts");

class QuickAckLayer : public DcmTransportLayer {
 public:
  DcmTransportConnection* createConnection(DcmNativeSocketType fd, OFBool secure) override {
    adopted_ = fd;  // from here on DCMTK closes fd, also when no connection is returned
    if (prepared_ && prepared_fd_ == fd) return prepared_.release();
    if (secure) return nullptr;
    return new QuickAckConnection(fd);
  }
  // The connection to hand DCMTK for `fd` in the next ASC_receiveAssociation.
  void Prepare(int fd, std::unique_ptr<DcmTransportConnection> connection) {
    prepared_fd_ = fd;
    prepared_ = std::move(connection);
  }
  // Whether DCMTK took `fd` over (and so closes it) since the last call. A prepared connection
  // DCMTK did not take is destroyed here, which closes `fd` too. Only under g_handoff_mu:
  // DCMTK creates connections inside ASC_receiveAssociation.
  bool TakeAdopted(int fd) {
    bool adopted = adopted_ == fd;
    if (prepared_) {
      prepared_.reset();
      adopted = true;
    }
    adopted_ = -1;
    return adopted;
  }

 private:
  DcmNativeSocketType adopted_ = -1;  // guarded by g_handoff_mu, as are the two below
  DcmNativeSocketType prepared_fd_ = -1;
  std::unique_ptr<DcmTransportConnection> prepared_;
};

}  // namespace

struct DicomListener::Network {
  T_ASC_Network* net = nullptr;
  QuickAckLayer layer;
  ~Network() {
    if (net) ASC_dropNetwork(&net);
  }

  // Hands an accepted socket whose A-ASSOCIATE-RQ has arrived to DCMTK, over `prepared` when
  // given (a TLS connection). On failure the socket is closed, by DCMTK if it had taken it over,
  // else here, and nullptr is returned.
  T_ASC_Association* Receive(int fd, uint32_t max_pdu_bytes, int timeout_seconds,
                             std::unique_ptr<DcmTransportConnection> prepared = nullptr) {
    const std::string peer = PeerAddress(fd);
    T_ASC_Association* assoc = nullptr;
    OFCondition cond;
    bool adopted = false;
    {
      std::lock_guard<std::mutex> lock(g_handoff_mu);
      if (prepared) layer.Prepare(fd, std::move(prepared));
      dcmExternalSocketHandle.set(fd);
      cond =
          ASC_receiveAssociation(net, &assoc, max_pdu_bytes, nullptr, nullptr, OFFalse, DUL_NOBLOCK, timeout_seconds);
      dcmExternalSocketHandle.set(-1);
      adopted = layer.TakeAdopted(fd);
    }
    if (cond.good()) return assoc;
    spdlog::warn("receiving association from {} failed: {}", peer, cond.text());
    if (assoc) {
      // Until DCMTK adopts the socket it has no upper-layer association, but may leave the field unset.
      if (!adopted) assoc->DULassociation = nullptr;
      ASC_dropAssociation(assoc);
      ASC_destroyAssociation(&assoc);
    }
    if (!adopted) ::close(fd);
    return nullptr;
  }
};

DicomListener::DicomListener(const Config& config, const CallerPolicy& policy, Ingest& ingest, ObjectStore& store,
                             const QueryEngine& engine, const DicomTls* tls, CertificateExpiry* expiry, AuditLog* audit,
                             StorageCommitment* commitment)
    : config_(config),
      policy_(policy),
      ingest_(ingest),
      store_(store),
      engine_(engine),
      tls_(tls),
      expiry_(expiry),
      audit_(audit),
      commitment_(commitment),
      tls_refusals_([audit](const AuditEntry& e) { return audit ? audit->Append(e) : Status::Ok(); }, NowMs) {}

DicomListener::~DicomListener() { Stop(); }

Status DicomListener::Listen(const std::string& address, uint16_t port, int& fd, uint16_t& bound_port) {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  int family = AF_INET;
  if (inet_pton(AF_INET, address.c_str(), &reinterpret_cast<sockaddr_in*>(&addr)->sin_addr) == 1) {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    addr_len = sizeof(sockaddr_in);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    if (inet_pton(AF_INET6, address.c_str(), &a->sin6_addr) != 1) {
      return Status::InvalidArgument("bad bind address " + address);
    }
    family = AF_INET6;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    addr_len = sizeof(sockaddr_in6);
  }
  fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno(errno, "socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0 || ::listen(fd, 128) != 0) {
    Status s = Status::FromErrno(errno, "bind " + address + ":" + std::to_string(port));
    ::close(fd);
    fd = -1;
    return s;
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  bound_port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                       : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  return Status::Ok();
}

Status DicomListener::Start() {
  const CentreConfig& c = config_.centre;
  if (Status s = Listen(c.bind_address, c.dicom_port, listen_fd_, port_); !s.ok()) return s;
  if (tls_) {
    if (config_.dicom_tls.same_port) {
      tls_port_ = port_;
    } else if (Status s = Listen(c.bind_address, config_.dicom_tls.port, tls_listen_fd_, tls_port_); !s.ok()) {
      ::close(listen_fd_);
      listen_fd_ = -1;
      return s;
    }
  }
  if (::pipe2(wake_pipe_, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");

  network_ = std::make_unique<Network>();
  dcmDisableGethostbyaddr.set(OFTrue);  // peer addresses stay numeric for the allow-lists
  {
    // With an external handle set, DCMTK adopts our listening socket instead of binding its own.
    std::lock_guard<std::mutex> lock(g_handoff_mu);
    dcmExternalSocketHandle.set(listen_fd_);
    OFCondition cond = ASC_initializeNetwork(NET_ACCEPTOR, port_, c.acse_timeout_seconds, &network_->net);
    dcmExternalSocketHandle.set(-1);
    if (cond.bad()) return Status::IOError(std::string("DICOM network init: ") + cond.text());
  }
  // The network now owns listen_fd_ and closes it when dropped.
  OFCondition cond = ASC_setTransportLayer(network_->net, &network_->layer, 0);
  if (cond.bad()) return Status::IOError(std::string("transport layer: ") + cond.text());

  for (int i = 0; i < c.max_associations; ++i) workers_.emplace_back([this] { WorkerLoop(); });
  acceptor_ = std::thread([this] { AcceptLoop(); });
  spdlog::info("DICOM listener {} on {}:{} ({} associations at most)", c.ae_title, c.bind_address, port_,
               c.max_associations);
  if (tls_) {
    spdlog::info("DICOM TLS ({}) on {}:{}{}", config_.dicom_tls.profile, c.bind_address, tls_port_,
                 config_.dicom_tls.allow_plain ? "" : "; plain associations refused");
  }
  return Status::Ok();
}

void DicomListener::Stop() {
  if (!acceptor_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  char byte = 0;
  (void)!::write(wake_pipe_[1], &byte, 1);
  acceptor_.join();
  cv_.notify_all();
  for (std::thread& w : workers_) w.join();
  workers_.clear();
  for (const Accepted& a : pending_) ::close(a.fd);
  pending_.clear();
  network_.reset();
  if (tls_listen_fd_ >= 0) ::close(tls_listen_fd_);
  tls_listen_fd_ = -1;
  ::close(wake_pipe_[0]);
  ::close(wake_pipe_[1]);
}

void DicomListener::AcceptLoop() {
  // Connections that found every worker busy, waiting for their A-ASSOCIATE-RQ so that it can be
  // rejected with a reason. They wait side by side here, so a silent one delays nobody else.
  struct Waiting {
    int fd;
    bool tls_port;
    std::chrono::steady_clock::time_point deadline;
    bool partial;  // some of the request has arrived: look again on the next tick, not on POLLIN
  };
  constexpr size_t kMaxWaiting = 64;
  constexpr auto kBusyWait = std::chrono::seconds(2);
  constexpr int kPartialTickMs = 20;
  std::vector<Waiting> waiting;
  // Busy TLS connections being refused: each needs a handshake, so each has its own thread,
  // and a few at once suffice. Declared after `waiting`, so that leaving waits for them first.
  constexpr size_t kMaxTlsRejecting = 8;
  std::vector<std::future<void>> tls_rejecting;
  auto reject_tls = [&](int fd, std::chrono::steady_clock::time_point deadline) {
    tls_rejecting.erase(std::remove_if(tls_rejecting.begin(), tls_rejecting.end(),
                                       [](const std::future<void>& f) {
                                         return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
                                       }),
                        tls_rejecting.end());
    if (tls_rejecting.size() >= kMaxTlsRejecting) {
      spdlog::warn("TLS association refused: all {} workers busy (too many waiting)", config_.centre.max_associations);
      ::close(fd);
      return;
    }
    try {
      tls_rejecting.push_back(std::async(std::launch::async, [this, fd, deadline] { RejectBusy(fd, deadline); }));
    } catch (const std::system_error& e) {
      spdlog::warn("TLS association refused: all {} workers busy ({})", config_.centre.max_associations, e.what());
      ::close(fd);
    }
  };
  std::vector<pollfd> fds;
  const size_t first_waiting = tls_listen_fd_ >= 0 ? 3 : 2;
  // Out of descriptors, accept fails while the listening socket stays readable: without a pause
  // the loop would spin. A negative fd is one poll skips.
  auto accept_paused_until = std::chrono::steady_clock::time_point::min();
  constexpr auto kAcceptPause = std::chrono::milliseconds(100);
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    const bool paused = now < accept_paused_until;
    fds.assign({{paused ? -1 : listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}});
    if (tls_listen_fd_ >= 0) fds.push_back({paused ? -1 : tls_listen_fd_, POLLIN, 0});
    int timeout_ms = paused ? static_cast<int>(kAcceptPause.count()) : -1;
    for (const Waiting& w : waiting) {
      fds.push_back({w.fd, static_cast<short>(w.partial ? POLLRDHUP : POLLIN | POLLRDHUP), 0});
      auto left = std::chrono::ceil<std::chrono::milliseconds>(w.deadline - now).count();
      if (w.partial) left = std::min<decltype(left)>(left, kPartialTickMs);
      left = std::max<decltype(left)>(left, 0);
      if (timeout_ms < 0 || left < timeout_ms) timeout_ms = static_cast<int>(left);
    }
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("listener poll failed: {}", std::strerror(errno));
      break;
    }
    if (fds[1].revents) break;
    const auto after = std::chrono::steady_clock::now();
    std::vector<Waiting> still;
    for (size_t i = 0; i < waiting.size(); ++i) {
      Waiting w = waiting[i];
      const short revents = fds[first_waiting + i].revents;
      Arrival a = revents != 0 || w.partial ? PeekAssociateRequest(w.fd) : Arrival::kPartial;
      if (a == Arrival::kComplete && tls_ && PeekFirstByte(w.fd, after) == 0x16) {
        reject_tls(w.fd, w.deadline);  // TLS on the shared port
      } else if (a == Arrival::kComplete) {
        RejectBusy(w.fd);
      } else if (a == Arrival::kFailed || (revents & (POLLRDHUP | POLLHUP | POLLERR)) || after >= w.deadline) {
        spdlog::warn("association refused: all {} workers busy (no request received)", config_.centre.max_associations);
        ::close(w.fd);
      } else {
        w.partial = w.partial || (revents & POLLIN);
        still.push_back(w);
      }
    }
    waiting.swap(still);
    for (size_t l = 0; l < first_waiting; ++l) {
      if (l == 1 || !(fds[l].revents & POLLIN)) continue;
      const bool tls_port = l == 2;
      int fd = ::accept4(fds[l].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          if (stats_.accept_errors++ % 100 == 0) {
            spdlog::warn("DICOM accept failed: {}; backing off", std::strerror(errno));
          }
          accept_paused_until = after + kAcceptPause;
        }
        continue;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      const std::string address = PeerAddress(fd);
      bool busy = false, over = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        busy = idle_workers_ <= static_cast<int>(pending_.size());
        int& from_address = per_address_[address];
        over = from_address >= config_.centre.max_connections_per_address;
        if (!busy && !over) {
          ++from_address;
          pending_.push_back({fd, tls_port, address});
        } else if (from_address == 0) {
          per_address_.erase(address);
        }
      }
      if (over) {
        if (stats_.connections_refused++ % 100 == 0) {
          spdlog::warn("DICOM connection from {} closed: {} connections from there already", address,
                       config_.centre.max_connections_per_address);
        }
        ::close(fd);
        continue;
      }
      if (!busy) {
        cv_.notify_one();
        continue;
      }
      stats_.rejected++;
      if (tls_port) {
        reject_tls(fd, after + kBusyWait);
      } else if (waiting.size() >= kMaxWaiting) {
        spdlog::warn("association refused: all {} workers busy (too many waiting)", config_.centre.max_associations);
        ::close(fd);
      } else {
        waiting.push_back({fd, tls_port, after + kBusyWait, false});
      }
    }
  }
  for (const Waiting& w : waiting) ::close(w.fd);
}

void DicomListener::RejectBusy(int fd, std::optional<std::chrono::steady_clock::time_point> tls_deadline) {
  std::unique_ptr<DcmTransportConnection> connection;
  const char* what = tls_deadline ? "TLS association" : "association";
  if (tls_deadline) {
    TlsPeer peer;
    std::string error;
    connection = AcceptTls(tls_->server_context(), fd, *tls_deadline, peer, error);
    if (!connection) {
      spdlog::warn("{} refused: all {} workers busy (no request received: {})", what, config_.centre.max_associations,
                   error);
      ::close(fd);
      return;
    }
  }
  // The request has arrived whole, so DCMTK reads it without waiting.
  T_ASC_Association* assoc = network_->Receive(fd, config_.centre.max_pdu_bytes, 1, std::move(connection));
  if (assoc) {
    T_ASC_RejectParameters rej{ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                               ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
    ASC_rejectAssociation(assoc, &rej);
    ASC_dropAssociation(assoc);
    ASC_destroyAssociation(&assoc);
  }
  spdlog::warn("{} refused: all {} workers busy", what, config_.centre.max_associations);
}

void DicomListener::WorkerLoop() {
  for (;;) {
    Accepted next{};
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++idle_workers_;
      cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      --idle_workers_;
      if (stopping_) return;
      next = pending_.front();
      pending_.pop_front();
    }
    const std::string address = next.address;
    try {
      RunConnection(std::move(next));
    } catch (const std::exception& e) {  // the worker must outlive any one association
      spdlog::error("association from {} ended by an error: {}", address, e.what());
    }
    DirectFile::ReleaseCachedBuffer();  // an idle worker keeps no receive buffer
    std::lock_guard<std::mutex> lock(mu_);
    if (--per_address_[address] <= 0) per_address_.erase(address);
  }
}

void DicomListener::RunConnection(Accepted c) {
  const int fd = c.fd;
  const int acse_timeout = config_.centre.acse_timeout_seconds;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(acse_timeout);
  const int first = PeekFirstByte(fd, deadline);
  const bool tls_hello = first == 0x16;
  const bool tls_here = tls_ && (c.tls_port || tls_port_ == port_);
  if (first < 0 || (c.tls_port && !tls_hello) || (tls_ && !tls_hello && !config_.dicom_tls.allow_plain)) {
    if (first >= 0) {
      spdlog::warn("connection from {} refused: not a TLS handshake, and this port takes TLS only", PeerAddress(fd));
      stats_.tls_refused++;
      (void)tls_refusals_.Refused("DICOM TLS peer " + PeerAddress(fd), "not a TLS handshake on a TLS-only port");
    }
    ::close(fd);
    return;
  }
  SetSocketTimeouts(fd, config_.centre.dimse_timeout_seconds);
  TlsPeer tls_peer;
  T_ASC_Association* assoc = nullptr;
  if (tls_here && tls_hello) {
    std::string error;
    std::unique_ptr<DcmTransportConnection> connection =
        AcceptTls(tls_->server_context(), fd, deadline, tls_peer, error);
    if (!connection) {
      spdlog::warn("TLS connection from {} refused: {}", PeerAddress(fd), error);
      stats_.tls_refused++;
      (void)tls_refusals_.Refused("DICOM TLS peer " + PeerAddress(fd), "TLS connection refused: " + error);
      ::close(fd);
      return;
    }
    if (tls_peer.has_certificate && expiry_) {
      expiry_->Observe(
          "peer " + tls_peer.subject, tls_peer.not_after,
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
              .count());
    }
    assoc = network_->Receive(fd, config_.centre.max_pdu_bytes, acse_timeout, std::move(connection));
  } else {
    if (!WaitForAssociateRequest(fd, deadline)) {
      ::close(fd);
      return;
    }
    assoc = network_->Receive(fd, config_.centre.max_pdu_bytes, acse_timeout);
  }
  if (!assoc) return;
  AssociationEnv env{config_,
                     engine_,
                     policy_,
                     ingest_,
                     store_,
                     stats_,
                     slots_,
                     tls_,
                     config_.centre.ae_title,
                     config_.centre.min_free_disk_mb * 1024 * 1024,
                     config_.centre.dimse_timeout_seconds,
                     audit_,
                     commitment_};
  RunAssociation(assoc, env, std::move(tls_peer));
}

}  // namespace teleread
