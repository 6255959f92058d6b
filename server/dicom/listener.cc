#include "server/dicom/listener.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/dcmlayer.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmdata/dcostrmf.h"
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
#include <system_error>
#include <iterator>
#include <optional>

#include "common/log.h"
#include "server/dicom/dicom_tls.h"
#include "server/dicom/dimse_status.h"
#include "server/dicom/socket_peek.h"
#include "server/dicom/tls_accept.h"
#include "server/dicom/qr_scp.h"

namespace teleread {

std::string ListenerStats::Metrics() const {
  std::string m;
  auto counter = [&m](const char* name, uint64_t value) {
    m += std::string("# TYPE ") + name + " counter\n" + name + " " + std::to_string(value) + "\n";
  };
  counter("teleread_dicom_associations_total", associations.load());
  counter("teleread_dicom_associations_rejected_total", rejected.load());
  counter("teleread_ingest_instances_total", stored.load());
  counter("teleread_ingest_refused_total", refused.load());
  counter("teleread_ingest_bytes_total", bytes.load());
  counter("teleread_dicom_tls_associations_total", tls_associations.load());
  counter("teleread_dicom_tls_refused_total", tls_refused.load());
  return m;
}
namespace {

// dcmExternalSocketHandle is one process-wide variable read inside ASC_receiveAssociation, so
// handing a socket to DCMTK is serialised. It is brief: the request is already buffered.
std::mutex g_handoff_mu;

static_assert(kMinPduBytes == ASC_MINIMUMPDUSIZE && kMaxPduBytes == ASC_MAXIMUMPDUSIZE,
              "the config's max_pdu_bytes range must be the one DCMTK accepts");

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

std::string HumanBytes(uint64_t b) {
  char out[32];
  std::snprintf(out, sizeof out, "%.1f MB", static_cast<double>(b) / 1e6);
  return out;
}

// Starts writing received bytes to disk while the rest of the object is still arriving, so the
// fsync before the acknowledgement only waits for the tail, not for the whole object.
class EarlyWriteback {
 public:
  explicit EarlyWriteback(const std::filesystem::path& file) : fd_(::open(file.c_str(), O_RDONLY | O_CLOEXEC)) {}
  ~EarlyWriteback() {
    if (fd_ >= 0) ::close(fd_);
  }
  EarlyWriteback(const EarlyWriteback&) = delete;
  EarlyWriteback& operator=(const EarlyWriteback&) = delete;

  static void Progress(void* self, unsigned long bytes_received) {
    auto* w = static_cast<EarlyWriteback*>(self);
    if (w->fd_ < 0 || bytes_received < w->next_kick_) return;
    ::sync_file_range(w->fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
    w->next_kick_ = bytes_received + kKickBytes;
  }

 private:
  static constexpr unsigned long kKickBytes = 256 * 1024;
  int fd_;
  unsigned long next_kick_ = kKickBytes;
};

struct AssociationEnv {
  const Config& config;
  const QueryEngine& engine;
  const CallerPolicy& policy;
  Ingest& ingest;
  ObjectStore& store;
  ListenerStats& stats;
  MemberSlots& slots;
  const DicomTls* tls;
  std::string ae_title;
  uint64_t min_free_bytes;
  int dimse_timeout;
};

// One accepted connection from A-ASSOCIATE-RQ to release: AE checks, negotiation, then the
// DIMSE loop. Our own loop rather than DcmSCP, whose config cannot hold a presentation context
// per storage SOP class (it stops at 128) and which hides the association from us.
class Association {
 public:
  Association(T_ASC_Association* assoc, const AssociationEnv& env, TlsPeer tls)
      : assoc_(assoc), env_(env), tls_(std::move(tls)) {
    char peer[256] = {};
    ASC_getPresentationAddresses(assoc_->params, peer, sizeof peer, nullptr, 0);
    peer_ = peer;
  }
  ~Association() {
    ASC_dropSCPAssociation(assoc_);
    ASC_destroyAssociation(&assoc_);
    if (slot_held_) env_.slots.Leave(caller_->member_id);
  }
  Association(const Association&) = delete;
  Association& operator=(const Association&) = delete;

  void Run() {
    if (!Negotiate()) return;
    env_.stats.associations++;
    if (tls_.tls) env_.stats.tls_associations++;
    Serve();
    if (stored_ + refused_ > 0) {
      spdlog::info("association {} ({}) from {} ended: {} stored, {} refused, {}{}", caller_->ae_title,
                   caller_->member_id.empty() ? "centre" : caller_->member_id, peer_, stored_, refused_,
                   HumanBytes(bytes_), tls_.tls ? "; " + tls_.protocol : std::string());
    }
  }

 private:
  void Reject(T_ASC_RejectParametersResult result, T_ASC_RejectParametersSource source,
              T_ASC_RejectParametersReason reason) {
    T_ASC_RejectParameters rej{result, source, reason};
    ASC_rejectAssociation(assoc_, &rej);
    env_.stats.rejected++;
  }

  bool Negotiate() {
    char calling[kAeBuffer] = {}, called[kAeBuffer] = {};
    ASC_getAPTitles(assoc_->params, calling, sizeof calling, called, sizeof called, nullptr, 0);
    if (!env_.policy.AcceptsCalledAeTitle(called)) {
      spdlog::warn("association from {} refused: called AE title '{}' is not ours", peer_, called);
      Reject(ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED);
      return false;
    }
    caller_ = env_.policy.Identify(calling, peer_);
    if (!caller_) {
      spdlog::warn("association from {} refused: calling AE title '{}' not recognised for that address", peer_,
                   calling);
      Reject(ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED);
      return false;
    }
    if (std::optional<std::string> problem = env_.policy.TransportProblem(*caller_, tls_, peer_)) {
      spdlog::warn("association {} from {} refused: {}", calling, peer_, *problem);
      if (tls_.tls) env_.stats.tls_refused++;
      Reject(ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED);
      return false;
    }
    if (const Member* member = env_.config.FindMemberByAeTitle(caller_->ae_title)) {
      if (!env_.slots.TryEnter(member->id, member->max_associations)) {
        spdlog::warn("association {} from {} refused: member {} has its {} associations open", calling, peer_,
                     member->id, member->max_associations);
        Reject(ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
               ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
        return false;
      }
      slot_held_ = true;
    }
    const char* echo_syntaxes[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax,
                                   UID_BigEndianExplicitTransferSyntax};
    const char* echo[] = {UID_VerificationSOPClass};
    OFCondition cond =
        ASC_acceptContextsWithPreferredTransferSyntaxes(assoc_->params, echo, 1, echo_syntaxes, 3);
    if (cond.good()) {
      cond = ASC_acceptContextsWithPreferredTransferSyntaxes(
          assoc_->params, const_cast<const char**>(kQueryRetrieveSopClasses), kNumQueryRetrieveSopClasses,
          echo_syntaxes, 3);
    }
    if (cond.good()) {
      cond = ASC_acceptContextsWithPreferredTransferSyntaxes(
          assoc_->params, dcmAllStorageSOPClassUIDs, numberOfDcmAllStorageSOPClassUIDs,
          const_cast<const char**>(kTransferSyntaxes), static_cast<int>(std::size(kTransferSyntaxes)));
    }
    if (cond.good()) AcceptProposedStorageRoles();
    if (cond.bad() || ASC_countAcceptedPresentationContexts(assoc_->params) == 0) {
      spdlog::warn("association {} from {} refused: no acceptable presentation context", calling, peer_);
      Reject(ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_NOREASON);
      return false;
    }
    ASC_setAPTitles(assoc_->params, nullptr, nullptr, env_.ae_title.c_str());
    cond = ASC_acknowledgeAssociation(assoc_);
    if (cond.bad()) {
      spdlog::warn("association {} from {}: acknowledging failed: {}", calling, peer_, cond.text());
      return false;
    }
    spdlog::debug("association accepted: {} from {}, {} presentation contexts{}", calling, peer_,
                  ASC_countAcceptedPresentationContexts(assoc_->params),
                  tls_.tls ? ", " + tls_.protocol + " " + tls_.cipher : std::string());
    return true;
  }

  // A C-GET caller proposes the SCP role for the storage classes it wants to receive; grant it,
  // so that we may send C-STOREs back on this association.
  void AcceptProposedStorageRoles() {
    const int n = ASC_countPresentationContexts(assoc_->params);
    for (int i = 0; i < n; ++i) {
      T_ASC_PresentationContext pc;
      if (ASC_getPresentationContext(assoc_->params, i, &pc).bad()) continue;
      if (pc.resultReason != ASC_P_ACCEPTANCE) continue;
      if (pc.proposedRole != ASC_SC_ROLE_SCP && pc.proposedRole != ASC_SC_ROLE_SCUSCP) continue;
      if (!dcmIsaStorageSOPClassUID(pc.abstractSyntax, ESSC_All)) continue;
      ASC_acceptPresentationContext(assoc_->params, pc.presentationContextID, pc.acceptedTransferSyntax,
                                    pc.proposedRole);
    }
  }

  void Serve() {
    for (;;) {
      T_DIMSE_Message msg{};
      T_ASC_PresentationContextID pres_id = 0;
      OFCondition cond =
          DIMSE_receiveCommand(assoc_, DIMSE_NONBLOCKING, env_.dimse_timeout, &pres_id, &msg, nullptr);
      if (cond == DUL_PEERREQUESTEDRELEASE) {
        ASC_acknowledgeRelease(assoc_);
        return;
      }
      if (cond == DUL_PEERABORTEDASSOCIATION) return;
      if (cond.bad()) {
        spdlog::warn("association {} from {} aborted: {}", caller_->ae_title, peer_, cond.text());
        ASC_abortAssociation(assoc_);
        return;
      }
      switch (msg.CommandField) {
        case DIMSE_C_ECHO_RQ:
          cond = DIMSE_sendEchoResponse(assoc_, pres_id, &msg.msg.CEchoRQ, STATUS_Success, nullptr);
          break;
        case DIMSE_C_STORE_RQ:
          cond = HandleStore(pres_id, msg.msg.CStoreRQ);
          break;
        case DIMSE_C_FIND_RQ:
          cond = ServeFind(assoc_, pres_id, msg.msg.CFindRQ, QrEnvironment());
          break;
        case DIMSE_C_MOVE_RQ:
          cond = ServeMove(assoc_, pres_id, msg.msg.CMoveRQ, QrEnvironment());
          break;
        case DIMSE_C_GET_RQ:
          cond = ServeGet(assoc_, pres_id, msg.msg.CGetRQ, QrEnvironment());
          break;
        case DIMSE_C_CANCEL_RQ:
          break;  // for an operation already finished: nothing to stop
        default:
          spdlog::warn("association {} from {}: unsupported DIMSE command 0x{:04X}", caller_->ae_title, peer_,
                       static_cast<unsigned>(msg.CommandField));
          cond = DIMSE_BADCOMMANDTYPE;
      }
      if (cond.bad()) {
        if (cond != DIMSE_BADCOMMANDTYPE) {
          spdlog::warn("association {} from {} aborted: {}", caller_->ae_title, peer_, cond.text());
        }
        ASC_abortAssociation(assoc_);
        return;
      }
    }
  }

  QrEnv QrEnvironment() const {
    return QrEnv{env_.config, env_.engine, env_.store, *caller_, peer_, env_.dimse_timeout, env_.tls};
  }

  // Reads the data set into a temp file exactly as it came over the wire, then hands it to Ingest.
  OFCondition HandleStore(T_ASC_PresentationContextID pres_id, const T_DIMSE_C_StoreRQ& req) {
    StoreOutcome outcome;
    if (caller_->member_id.empty()) {
      outcome = {IngestCode::kNotAuthorized, "centre AE titles do not send studies for reading", false, 0};
    } else if (Result<uint64_t> free = env_.store.FreeBytes(); !free.ok() || free.value() < env_.min_free_bytes) {
      outcome = {IngestCode::kNoStorage, "storage is full", false, 0};
    }
    std::filesystem::path temp;
    DcmOutputFileStream* stream = nullptr;
    if (outcome.code == IngestCode::kStored) {
      temp = env_.store.NewTempPath();
      if (DIMSE_createFilestream(OFFilename(temp.c_str()), &req, assoc_, pres_id, OFTrue, &stream).bad()) {
        outcome = {IngestCode::kNoStorage, "cannot write to the storage root", false, 0};
        stream = nullptr;
      }
    }
    if (stream == nullptr) {
      DIC_UL bytes = 0, pdvs = 0;
      OFCondition cond = DIMSE_ignoreDataSet(assoc_, DIMSE_NONBLOCKING, env_.dimse_timeout, &bytes, &pdvs);
      if (cond.bad()) return cond;
    } else {
      T_ASC_PresentationContextID data_pres = pres_id;
      EarlyWriteback writeback(temp);
      OFCondition cond = DIMSE_receiveDataSetInFile(assoc_, DIMSE_NONBLOCKING, env_.dimse_timeout, &data_pres, stream,
                                                    &EarlyWriteback::Progress, &writeback);
      // DCMTK drains the rest of the data set itself when a write fails, so the association lives on.
      const bool write_failed = cond == DIMSE_OUTOFRESOURCES || stream->status().bad();
      const offile_off_t expected_size = stream->tell();
      delete stream;  // closes the file; a failed final flush shows as a short file below
      if (!write_failed && (cond.bad() || data_pres != pres_id)) {
        // The connection broke mid-object: nothing is kept and nobody awaits an answer.
        ::unlink(temp.c_str());
        spdlog::warn("C-STORE from {} interrupted: {}", caller_->ae_title,
                     cond.bad() ? cond.text() : "data set on another presentation context");
        return cond.bad() ? cond : DIMSE_BADDATA;
      }
      std::error_code ec;
      if (write_failed || std::filesystem::file_size(temp, ec) != static_cast<uintmax_t>(expected_size) || ec) {
        ::unlink(temp.c_str());
        outcome = {IngestCode::kNoStorage, "writing the object failed: storage full", false, 0};
      } else {
        T_ASC_PresentationContext pc;
        ASC_findAcceptedPresentationContext(assoc_->params, pres_id, &pc);
        StoreRequest request{temp, caller_->ae_title, caller_->member_id, pc.abstractSyntax,
                             req.AffectedSOPInstanceUID, {}};
        outcome = env_.ingest.Store(request);
      }
    }
    Account(req, outcome);
    T_DIMSE_C_StoreRSP rsp{};
    rsp.MessageIDBeingRespondedTo = req.MessageID;
    rsp.DimseStatus = dimse::ForIngest(outcome.code);
    rsp.DataSetType = DIMSE_DATASET_NULL;
    OFStandard::strlcpy(rsp.AffectedSOPClassUID, req.AffectedSOPClassUID, sizeof rsp.AffectedSOPClassUID);
    OFStandard::strlcpy(rsp.AffectedSOPInstanceUID, req.AffectedSOPInstanceUID, sizeof rsp.AffectedSOPInstanceUID);
    rsp.opts = O_STORE_AFFECTEDSOPCLASSUID | O_STORE_AFFECTEDSOPINSTANCEUID;
    DcmDataset detail;
    DcmDataset* detail_ptr = nullptr;
    if (!outcome.error_comment.empty()) {
      dimse::SetErrorComment(detail, outcome.error_comment);
      detail_ptr = &detail;
    }
    return DIMSE_sendStoreResponse(assoc_, pres_id, &req, &rsp, detail_ptr);
  }

  void Account(const T_DIMSE_C_StoreRQ& req, const StoreOutcome& outcome) {
    if (outcome.code == IngestCode::kStored) {
      ++stored_;
      bytes_ += outcome.bytes;
      env_.stats.stored++;
      env_.stats.bytes += outcome.bytes;
      spdlog::debug("stored sop={} from {}{}", req.AffectedSOPInstanceUID, caller_->ae_title,
                    outcome.stored_new ? "" : " (identical re-send)");
    } else {
      ++refused_;
      env_.stats.refused++;
      spdlog::warn("C-STORE sop={} from {} refused with 0x{:04X}: {}", req.AffectedSOPInstanceUID, caller_->ae_title,
                   dimse::ForIngest(outcome.code), outcome.error_comment);
    }
  }

  static constexpr size_t kAeBuffer = 17;
  T_ASC_Association* assoc_;
  const AssociationEnv& env_;
  const TlsPeer tls_;
  std::string peer_;
  std::optional<Caller> caller_;
  bool slot_held_ = false;
  uint64_t stored_ = 0, refused_ = 0, bytes_ = 0;
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
      cond = ASC_receiveAssociation(net, &assoc, max_pdu_bytes, nullptr, nullptr, OFFalse, DUL_NOBLOCK,
                                    timeout_seconds);
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

bool MemberSlots::TryEnter(const std::string& member_id, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  int& n = active_[member_id];
  if (n >= limit) return false;
  ++n;
  return true;
}

void MemberSlots::Leave(const std::string& member_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (--active_[member_id] <= 0) active_.erase(member_id);
}

DicomListener::DicomListener(const Config& config, const CallerPolicy& policy, Ingest& ingest, ObjectStore& store,
                             const QueryEngine& engine, const DicomTls* tls, CertificateExpiry* expiry)
    : config_(config), policy_(policy), ingest_(ingest), store_(store), engine_(engine), tls_(tls), expiry_(expiry) {}

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
      tls_rejecting.push_back(std::async(std::launch::async, [this, fd, deadline] { RejectBusyTls(fd, deadline); }));
    } catch (const std::system_error& e) {
      spdlog::warn("TLS association refused: all {} workers busy ({})", config_.centre.max_associations, e.what());
      ::close(fd);
    }
  };
  std::vector<pollfd> fds;
  const size_t first_waiting = tls_listen_fd_ >= 0 ? 3 : 2;
  for (;;) {
    fds.assign({{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}});
    if (tls_listen_fd_ >= 0) fds.push_back({tls_listen_fd_, POLLIN, 0});
    int timeout_ms = -1;
    const auto now = std::chrono::steady_clock::now();
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
        spdlog::warn("association refused: all {} workers busy (no request received)",
                     config_.centre.max_associations);
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
      if (fd < 0) continue;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      bool busy = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        busy = idle_workers_ <= static_cast<int>(pending_.size());
        if (!busy) pending_.push_back({fd, tls_port});
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

void DicomListener::RejectBusy(int fd) {
  // The request has arrived whole, so DCMTK reads it without waiting.
  T_ASC_Association* assoc = network_->Receive(fd, config_.centre.max_pdu_bytes, 1);
  if (assoc) {
    T_ASC_RejectParameters rej{ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                               ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
    ASC_rejectAssociation(assoc, &rej);
    ASC_dropAssociation(assoc);
    ASC_destroyAssociation(&assoc);
  }
  spdlog::warn("association refused: all {} workers busy", config_.centre.max_associations);
}

void DicomListener::RejectBusyTls(int fd, std::chrono::steady_clock::time_point deadline) {
  TlsPeer peer;
  std::string error;
  std::unique_ptr<DcmTransportConnection> connection = AcceptTls(tls_->server_context(), fd, deadline, peer, error);
  if (!connection) {
    spdlog::warn("TLS association refused: all {} workers busy (no request received: {})",
                 config_.centre.max_associations, error);
    ::close(fd);
    return;
  }
  T_ASC_Association* assoc = network_->Receive(fd, config_.centre.max_pdu_bytes, 1, std::move(connection));
  if (assoc) {
    T_ASC_RejectParameters rej{ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
                               ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED};
    ASC_rejectAssociation(assoc, &rej);
    ASC_dropAssociation(assoc);
    ASC_destroyAssociation(&assoc);
  }
  spdlog::warn("TLS association refused: all {} workers busy", config_.centre.max_associations);
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
    RunConnection(next);
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
    }
    ::close(fd);
    return;
  }
  SetSocketTimeouts(fd, config_.centre.dimse_timeout_seconds);
  TlsPeer tls_peer;
  T_ASC_Association* assoc = nullptr;
  if (tls_here && tls_hello) {
    std::string error;
    std::unique_ptr<DcmTransportConnection> connection = AcceptTls(tls_->server_context(), fd, deadline, tls_peer, error);
    if (!connection) {
      spdlog::warn("TLS connection from {} refused: {}", PeerAddress(fd), error);
      stats_.tls_refused++;
      ::close(fd);
      return;
    }
    if (tls_peer.has_certificate && expiry_) {
      expiry_->Observe("peer " + tls_peer.subject, tls_peer.not_after,
                       std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count());
    }
    assoc = network_->Receive(fd, config_.centre.max_pdu_bytes, acse_timeout,
                              std::move(connection));
  } else {
    if (!WaitForAssociateRequest(fd, deadline)) {
      ::close(fd);
      return;
    }
    assoc = network_->Receive(fd, config_.centre.max_pdu_bytes, acse_timeout);
  }
  if (!assoc) return;
  AssociationEnv env{config_, engine_, policy_, ingest_, store_, stats_, slots_, tls_, config_.centre.ae_title,
                     config_.centre.min_free_disk_mb * 1024 * 1024, config_.centre.dimse_timeout_seconds};
  Association(assoc, env, std::move(tls_peer)).Run();
}

}  // namespace teleread
