#include "server/dicom_listener.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/dcmlayer.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/dcmnet/scpthrd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>

#include "common/log.h"

namespace teleread {
namespace {

// dcmExternalSocketHandle is one process-wide variable read inside ASC_receiveAssociation, so
// handing a socket to DCMTK is serialised. It is brief: the request is already buffered.
std::mutex g_handoff_mu;

// Senders that leave Nagle on wait for our delayed ACK after every small PDU; acknowledging at
// once after each read removes that ~40 ms stall per object. The option does not stick.
class QuickAckConnection : public DcmTCPConnection {
 public:
  explicit QuickAckConnection(DcmNativeSocketType fd) : DcmTCPConnection(fd), fd_(fd) {}
  ssize_t read(void* buf, size_t nbyte) override {
    ssize_t n = DcmTCPConnection::read(buf, nbyte);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    return n;
  }

 private:
  DcmNativeSocketType fd_;
};

class QuickAckLayer : public DcmTransportLayer {
 public:
  DcmTransportConnection* createConnection(DcmNativeSocketType fd, OFBool secure) override {
    if (secure) return nullptr;
    return new QuickAckConnection(fd);
  }
};

const char* const kTransferSyntaxes[] = {
    // Native encodings first: a sender offering a choice never has to compress for us.
    UID_LittleEndianExplicitTransferSyntax,
    UID_LittleEndianImplicitTransferSyntax,
    UID_BigEndianExplicitTransferSyntax,
    UID_DeflatedExplicitVRLittleEndianTransferSyntax,
    UID_JPEGProcess14SV1TransferSyntax,
    UID_JPEGProcess14TransferSyntax,
    UID_JPEGLSLosslessTransferSyntax,
    UID_JPEG2000LosslessOnlyTransferSyntax,
    UID_RLELosslessTransferSyntax,
    UID_JPEGProcess1TransferSyntax,
    UID_JPEGProcess2_4TransferSyntax,
    UID_JPEGLSLossyTransferSyntax,
    UID_JPEG2000TransferSyntax,
};

// Waits until the whole A-ASSOCIATE-RQ PDU has arrived, so that a slow or silent client holds
// only its own worker and never the shared hand-off. False on timeout, close or a bad header.
bool WaitForAssociateRequest(int fd, std::chrono::steady_clock::time_point deadline) {
  constexpr size_t kMaxRequest = 1 << 20;
  std::vector<unsigned char> buf(6);
  size_t need = 6;
  for (;;) {
    ssize_t n = ::recv(fd, buf.data(), need, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return false;
    if (n > 0 && static_cast<size_t>(n) >= need) {
      if (need > 6) return true;
      if (buf[0] != 0x01) return true;  // not an A-ASSOCIATE-RQ: let DCMTK refuse it properly
      size_t length = (size_t{buf[2]} << 24) | (size_t{buf[3]} << 16) | (size_t{buf[4]} << 8) | buf[5];
      if (length > kMaxRequest) return false;
      need = 6 + length;
      buf.resize(need);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) return false;
  }
}

std::string HumanBytes(uint64_t b) {
  char out[32];
  std::snprintf(out, sizeof out, "%.1f MB", static_cast<double>(b) / 1e6);
  return out;
}

// One association: AE checks, then C-ECHO (base class) and C-STORE.
class AssociationScp : public DcmThreadSCP {
 public:
  AssociationScp(const CallerPolicy& policy, Ingest& ingest, ObjectStore& store, ListenerStats& stats,
                 uint64_t min_free_bytes)
      : policy_(policy), ingest_(ingest), store_(store), stats_(stats), min_free_bytes_(min_free_bytes) {}

 protected:
  OFBool checkCalledAETitleAccepted(const OFString& called) override {
    if (policy_.AcceptsCalledAeTitle(called.c_str())) return OFTrue;
    spdlog::warn("association from {} refused: called AE title '{}' is not ours", getPeerIP().c_str(), called.c_str());
    stats_.rejected++;
    return OFFalse;
  }

  OFBool checkCallingAETitleAccepted(const OFString& calling) override {
    caller_ = policy_.Identify(calling.c_str(), getPeerIP().c_str());
    if (caller_) return OFTrue;
    spdlog::warn("association from {} refused: calling AE title '{}' not recognised for that address",
                 getPeerIP().c_str(), calling.c_str());
    stats_.rejected++;
    return OFFalse;
  }

  void notifyAssociationAcknowledge() override {
    stats_.associations++;
    spdlog::debug("association accepted: {} ({}) from {}", caller_->ae_title, caller_->member_id,
                  getPeerIP().c_str());
  }

  void notifyAssociationTermination() override {
    if (!caller_ || (stored_ == 0 && refused_ == 0)) return;
    spdlog::info("association {} ({}) from {} ended: {} stored, {} refused, {}", caller_->ae_title,
                 caller_->member_id, getPeerIP().c_str(), stored_, refused_, HumanBytes(bytes_));
  }

  OFCondition handleIncomingCommand(T_DIMSE_Message* msg, const DcmPresentationContextInfo& info) override {
    if (msg->CommandField == DIMSE_C_STORE_RQ) return HandleStore(msg->msg.CStoreRQ, info);
    return DcmThreadSCP::handleIncomingCommand(msg, info);
  }

 private:
  OFCondition HandleStore(T_DIMSE_C_StoreRQ& req, const DcmPresentationContextInfo& info) {
    std::filesystem::path temp = store_.NewTempPath();
    OFCondition cond = receiveSTORERequest(req, info.presentationContextID, OFString(temp.c_str()));
    StoreOutcome outcome;
    if (cond == DIMSE_OUTOFRESOURCES) {
      ::unlink(temp.c_str());
      outcome = {dimse::kOutOfResources, "cannot write to the storage root", false, 0};
    } else if (cond.bad()) {
      // The connection broke mid-object: nothing was stored and nobody awaits an answer.
      ::unlink(temp.c_str());
      spdlog::warn("C-STORE from {} interrupted: {}", caller_->ae_title, cond.text());
      return cond;
    } else if (caller_->member_id.empty()) {
      ::unlink(temp.c_str());
      outcome = {dimse::kNotAuthorized, "centre AE titles do not send studies for reading", false, 0};
    } else if (Result<uint64_t> free = store_.FreeBytes(); !free.ok() || free.value() < min_free_bytes_) {
      ::unlink(temp.c_str());
      outcome = {dimse::kOutOfResources, "storage is full", false, 0};
    } else {
      StoreRequest request{temp, caller_->ae_title, caller_->member_id, info.abstractSyntax.c_str(),
                           req.AffectedSOPInstanceUID};
      outcome = ingest_.Store(request);
    }
    if (outcome.status == dimse::kSuccess) {
      ++stored_;
      bytes_ += outcome.bytes;
      stats_.stored++;
      stats_.bytes += outcome.bytes;
      spdlog::debug("stored sop={} from {}{}", req.AffectedSOPInstanceUID, caller_->ae_title,
                    outcome.stored_new ? "" : " (identical re-send)");
    } else {
      ++refused_;
      stats_.refused++;
      spdlog::warn("C-STORE sop={} from {} refused with 0x{:04X}: {}", req.AffectedSOPInstanceUID,
                   caller_->ae_title, outcome.status, outcome.error_comment);
    }
    DcmDataset detail;
    DcmDataset* detail_ptr = nullptr;
    if (!outcome.error_comment.empty()) {
      detail.putAndInsertString(DCM_ErrorComment, outcome.error_comment.substr(0, 64).c_str());
      detail_ptr = &detail;
    }
    return sendSTOREResponse(info.presentationContextID, req.MessageID, req.AffectedSOPClassUID,
                             req.AffectedSOPInstanceUID, outcome.status, detail_ptr);
  }

  const CallerPolicy& policy_;
  Ingest& ingest_;
  ObjectStore& store_;
  ListenerStats& stats_;
  uint64_t min_free_bytes_;
  std::optional<Caller> caller_;
  uint64_t stored_ = 0, refused_ = 0, bytes_ = 0;
};

}  // namespace

struct DicomListener::Network {
  T_ASC_Network* net = nullptr;
  QuickAckLayer layer;
  DcmSCPConfig scp_config;
  DcmSharedSCPConfig shared;
  ~Network() {
    if (net) ASC_dropNetwork(&net);
  }
};

DicomListener::DicomListener(const Config& config, const CallerPolicy& policy, Ingest& ingest, ObjectStore& store)
    : config_(config), policy_(policy), ingest_(ingest), store_(store) {}

DicomListener::~DicomListener() { Stop(); }

Status DicomListener::Start() {
  const CentreConfig& c = config_.centre;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  int family = AF_INET;
  if (inet_pton(AF_INET, c.bind_address.c_str(), &reinterpret_cast<sockaddr_in*>(&addr)->sin_addr) == 1) {
    auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(c.dicom_port);
    addr_len = sizeof(sockaddr_in);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    if (inet_pton(AF_INET6, c.bind_address.c_str(), &a->sin6_addr) != 1) {
      return Status::InvalidArgument("bad bind address " + c.bind_address);
    }
    family = AF_INET6;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(c.dicom_port);
    addr_len = sizeof(sockaddr_in6);
  }
  listen_fd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return Status::FromErrno(errno, "socket");
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    Status s = Status::FromErrno(errno, "bind " + c.bind_address + ":" + std::to_string(c.dicom_port));
    ::close(listen_fd_);
    listen_fd_ = -1;
    return s;
  }
  if (::listen(listen_fd_, 128) != 0) return Status::FromErrno(errno, "listen");
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof bound;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  port_ = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                  : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  if (::pipe2(wake_pipe_, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");

  network_ = std::make_unique<Network>();
  DcmSCPConfig& cfg = network_->scp_config;
  cfg.setAETitle(c.ae_title.c_str());
  cfg.setMaxReceivePDULength(c.max_pdu_bytes);
  cfg.setACSETimeout(static_cast<Uint32>(c.acse_timeout_seconds));
  cfg.setDIMSETimeout(static_cast<Uint32>(c.dimse_timeout_seconds));
  cfg.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
  cfg.setHostLookupEnabled(OFFalse);
  OFList<OFString> syntaxes;
  for (const char* ts : kTransferSyntaxes) syntaxes.push_back(ts);
  for (int i = 0; i < numberOfDcmAllStorageSOPClassUIDs; ++i) {
    OFCondition cond = cfg.addPresentationContext(dcmAllStorageSOPClassUIDs[i], syntaxes);
    if (cond.bad()) return Status::InvalidArgument(std::string("presentation context: ") + cond.text());
  }
  OFList<OFString> echo_syntaxes;
  echo_syntaxes.push_back(UID_LittleEndianExplicitTransferSyntax);
  echo_syntaxes.push_back(UID_LittleEndianImplicitTransferSyntax);
  (void)cfg.addPresentationContext(UID_VerificationSOPClass, echo_syntaxes);
  network_->shared = DcmSharedSCPConfig(cfg);

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
  for (int fd : pending_) ::close(fd);
  pending_.clear();
  network_.reset();
  ::close(wake_pipe_[0]);
  ::close(wake_pipe_[1]);
}

void DicomListener::AcceptLoop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("listener poll failed: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bool busy = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      busy = idle_workers_ <= static_cast<int>(pending_.size());
      if (!busy) pending_.push_back(fd);
    }
    if (busy) {
      RejectBusy(fd);
    } else {
      cv_.notify_one();
    }
  }
}

void DicomListener::RejectBusy(int fd) {
  stats_.rejected++;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  if (!WaitForAssociateRequest(fd, deadline)) {
    ::close(fd);
    return;
  }
  T_ASC_Association* assoc = nullptr;
  OFCondition cond;
  {
    std::lock_guard<std::mutex> lock(g_handoff_mu);
    dcmExternalSocketHandle.set(fd);
    cond = ASC_receiveAssociation(network_->net, &assoc, config_.centre.max_pdu_bytes, nullptr, nullptr, OFFalse,
                                  DUL_NOBLOCK, 2);
    dcmExternalSocketHandle.set(-1);
  }
  if (assoc) {
    if (cond.good()) {
      T_ASC_RejectParameters rej{ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                                 ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
      ASC_rejectAssociation(assoc, &rej);
    }
    ASC_dropAssociation(assoc);
    ASC_destroyAssociation(&assoc);
  } else {
    ::close(fd);
  }
  spdlog::warn("association refused: all {} workers busy", config_.centre.max_associations);
}

void DicomListener::WorkerLoop() {
  for (;;) {
    int fd = -1;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++idle_workers_;
      cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      --idle_workers_;
      if (stopping_) return;
      fd = pending_.front();
      pending_.pop_front();
    }
    RunConnection(fd);
  }
}

void DicomListener::RunConnection(int fd) {
  const int acse_timeout = config_.centre.acse_timeout_seconds;
  if (!WaitForAssociateRequest(fd, std::chrono::steady_clock::now() + std::chrono::seconds(acse_timeout))) {
    ::close(fd);
    return;
  }
  T_ASC_Association* assoc = nullptr;
  OFCondition cond;
  {
    std::lock_guard<std::mutex> lock(g_handoff_mu);
    dcmExternalSocketHandle.set(fd);
    cond = ASC_receiveAssociation(network_->net, &assoc, config_.centre.max_pdu_bytes, nullptr, nullptr, OFFalse,
                                  DUL_NOBLOCK, acse_timeout);
    dcmExternalSocketHandle.set(-1);
  }
  if (cond.bad()) {
    spdlog::debug("receiving association failed: {}", cond.text());
    if (assoc) {
      ASC_dropAssociation(assoc);
      ASC_destroyAssociation(&assoc);
    } else {
      ::close(fd);
    }
    return;
  }
  AssociationScp scp(policy_, ingest_, store_, stats_, config_.centre.min_free_disk_mb * 1024 * 1024);
  (void)scp.setSharedConfig(network_->shared);
  // run() negotiates, serves the association and then drops and destroys it.
  (void)scp.run(assoc);
}

}  // namespace teleread
