#include "server/dicom/association.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/ofstd/ofstd.h"

#include <cstdio>
#include <iterator>
#include <memory>
#include <optional>

#include "common/log.h"
#include "server/dicom/commitment.h"
#include "server/dicom/dimse_status.h"
#include "server/dicom/find_responses.h"
#include "server/dicom/qr_scp.h"
#include "server/dicom/receive.h"
#include "server/store/direct_file.h"
#include "server/store/segment_trailer.h"

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
  counter("teleread_dicom_connections_refused_total", connections_refused.load());
  counter("teleread_dicom_accept_errors_total", accept_errors.load());
  // Each 256 KiB; one per association receiving a file-tier object, none once they have ended.
  m += "# TYPE teleread_dicom_receive_buffers gauge\nteleread_dicom_receive_buffers " +
       std::to_string(DirectFile::LiveBuffers()) + "\n";
  return m;
}
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

namespace {

// The MemberSlots key the centre's AE titles share; the control character keeps it apart from
// member ids.
constexpr const char* kCentreSlot = "\001centre";

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
    if (slot_held_) env_.slots.Leave(caller_->member_id.empty() ? std::string(kCentreSlot) : caller_->member_id);
  }
  Association(const Association&) = delete;
  Association& operator=(const Association&) = delete;

  void Run() {
    if (!Negotiate()) return;
    env_.stats.associations++;
    if (tls_.tls) env_.stats.tls_associations++;
    Serve();
    // Reports to requesters that did not stay to listen go on new associations, once theirs ended.
    for (const CommitmentReport& report : deferred_reports_) SendCommitmentReport(report, CommitmentEnvironment());
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
    const Member* member = env_.config.FindMemberByAeTitle(caller_->ae_title);
    // Centre AE titles share one limit of their own, so a workstation cannot take every worker.
    const std::string slot = member ? member->id : std::string(kCentreSlot);
    const int limit = member ? member->max_associations : env_.config.centre.centre_max_associations;
    {
      if (!env_.slots.TryEnter(slot, limit)) {
        spdlog::warn("association {} from {} refused: {} has its {} associations open", calling, peer_,
                     member ? "member " + member->id : std::string("the centre's AE titles"), limit);
        Reject(ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
               ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
        return false;
      }
      slot_held_ = true;
    }
    const char* echo_syntaxes[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax,
                                   UID_BigEndianExplicitTransferSyntax};
    const char* echo[] = {UID_VerificationSOPClass};
    OFCondition cond = ASC_acceptContextsWithPreferredTransferSyntaxes(assoc_->params, echo, 1, echo_syntaxes, 3);
    if (cond.good()) {
      cond = ASC_acceptContextsWithPreferredTransferSyntaxes(assoc_->params,
                                                             const_cast<const char**>(kQueryRetrieveSopClasses),
                                                             kNumQueryRetrieveSopClasses, echo_syntaxes, 3);
    }
    if (cond.good()) {
      cond = ASC_acceptContextsWithPreferredTransferSyntaxes(
          assoc_->params, dcmAllStorageSOPClassUIDs, numberOfDcmAllStorageSOPClassUIDs,
          const_cast<const char**>(kTransferSyntaxes), static_cast<int>(std::size(kTransferSyntaxes)));
    }
    if (cond.good() && env_.commitment) AcceptStorageCommitment(echo_syntaxes);
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
    if (IsRetiredAesProfile(tls_)) {
      spdlog::warn("association {} from {} uses the retired AES profile ({} {}): weak, no forward secrecy", calling,
                   peer_, tls_.protocol, tls_.cipher);
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

  // Storage Commitment Push Model, in the role the requester proposed: SCU/SCP means it stays
  // to take the N-EVENT-REPORT on this association.
  void AcceptStorageCommitment(const char* const* syntaxes) {
    const int n = ASC_countPresentationContexts(assoc_->params);
    for (int i = 0; i < n; ++i) {
      T_ASC_PresentationContext pc;
      if (ASC_getPresentationContext(assoc_->params, i, &pc).bad()) continue;
      if (std::string(pc.abstractSyntax) != UID_StorageCommitmentPushModelSOPClass) continue;
      for (int t = 0; t < pc.transferSyntaxCount; ++t) {
        for (int k = 0; k < 3; ++k) {
          if (std::string(pc.proposedTransferSyntaxes[t]) != syntaxes[k]) continue;
          ASC_acceptPresentationContext(
              assoc_->params, pc.presentationContextID, syntaxes[k],
              pc.proposedRole == ASC_SC_ROLE_SCUSCP ? ASC_SC_ROLE_SCUSCP : ASC_SC_ROLE_DEFAULT);
          t = pc.transferSyntaxCount;
          break;
        }
      }
    }
  }

  CommitmentEnv CommitmentEnvironment() const {
    return CommitmentEnv{*env_.commitment, env_.config, env_.store, env_.tls, env_.ae_title, env_.dimse_timeout};
  }

  void Serve() {
    for (;;) {
      T_DIMSE_Message msg{};
      T_ASC_PresentationContextID pres_id = 0;
      OFCondition cond = DIMSE_receiveCommand(assoc_, DIMSE_NONBLOCKING, env_.dimse_timeout, &pres_id, &msg, nullptr);
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
        case DIMSE_N_ACTION_RQ:
          if (env_.commitment) {
            std::optional<CommitmentReport> deferred;
            cond = ServeCommitment(assoc_, pres_id, msg.msg.NActionRQ, *caller_, CommitmentEnvironment(), &deferred);
            if (deferred) deferred_reports_.push_back(std::move(*deferred));
          } else {
            cond = DIMSE_BADCOMMANDTYPE;
          }
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

  QrEnv QrEnvironment() {
    return QrEnv{env_.config, env_.engine, env_.store, *caller_, peer_, env_.dimse_timeout, env_.tls, env_.audit};
  }

  // Reads the data set exactly as it came over the wire (a small one into memory, else into a temp
  // file), then hands it to Ingest.
  OFCondition HandleStore(T_ASC_PresentationContextID pres_id, const T_DIMSE_C_StoreRQ& req) {
    StoreOutcome outcome;
    if (caller_->member_id.empty()) {
      outcome = {IngestCode::kNotAuthorized, "centre AE titles do not send studies for reading", false, 0};
    } else if (Result<uint64_t> free = env_.store.FreeBytes(); !free.ok() || free.value() < env_.min_free_bytes) {
      outcome = {IngestCode::kNoStorage, "storage is full", false, 0};
    }
    // Held until the answer: see Ingest::Receiving.
    std::optional<Ingest::Receiving> receiving;
    if (outcome.code == IngestCode::kStored) {
      Result<Ingest::Receiving> began = env_.ingest.BeginReceive(req.AffectedSOPInstanceUID);
      if (began.ok()) {
        receiving.emplace(std::move(began).value());
      } else {
        outcome = {IngestCode::kNoStorage, "the index cannot be made durable: " + began.status().message(), false, 0};
      }
    }
    if (outcome.code != IngestCode::kStored) {
      DIC_UL bytes = 0, pdvs = 0;
      OFCondition cond = DIMSE_ignoreDataSet(assoc_, DIMSE_NONBLOCKING, env_.dimse_timeout, &bytes, &pdvs);
      if (cond.bad()) return cond;
    } else {
      ReceivedDataSet received;
      OFCondition cond =
          ReceiveDataSet(assoc_, pres_id, req.AffectedSOPClassUID, req.AffectedSOPInstanceUID, env_.store,
                         env_.dimse_timeout, true, &received, env_.store.small_object_bytes(), &segment_);
      if (cond.bad()) {
        // The connection broke mid-object: nothing is kept and nobody awaits an answer.
        spdlog::warn("C-STORE from {} interrupted: {}", caller_->ae_title,
                     cond == DIMSE_BADDATA ? "data set on another presentation context" : cond.text());
        return cond;
      }
      if (received.outcome == ReceivedDataSet::Outcome::kCannotCreate) {
        outcome = {IngestCode::kNoStorage, "cannot write to the storage root", false, 0};
      } else if (received.outcome == ReceivedDataSet::Outcome::kWriteFailed) {
        outcome = {IngestCode::kNoStorage, "writing the object failed: storage full", false, 0};
        env_.ingest.KeepsSealedCopy(req.AffectedSOPInstanceUID);  // its trailer may be written
      } else {
        T_ASC_PresentationContext pc;
        ASC_findAcceptedPresentationContext(assoc_->params, pres_id, &pc);
        StoreRequest request{received.path,
                             caller_->ae_title,
                             caller_->member_id,
                             pc.abstractSyntax,
                             req.AffectedSOPInstanceUID,
                             {},
                             {}};
        request.bytes = std::move(received.bytes);
        request.head = std::move(received.head);
        request.segment_object = std::move(received.segment_object);
        request.segment_synced = received.segment_synced;
        request.segment_sync = received.segment_sync.get();
        request.coming = receiving ? receiving->coming() : nullptr;
        outcome = env_.ingest.Store(request);
        // A copy no row names that stays sealed (a refusal that may pass later, a failed voiding):
        // later copies of its UID commit their rows synced.
        const bool named = outcome.code == IngestCode::kStored && outcome.stored_new;
        if (!request.segment_object.empty() && !named &&
            !(env_.ingest.SegmentCopyUnneeded(request, outcome) && VoidUnnamedCopy(request.segment_object))) {
          env_.ingest.KeepsSealedCopy(req.AffectedSOPInstanceUID);
        }
      }
    }
    // Its row queued by now or never: no batch waits for it while the answer goes out.
    if (receiving) receiving->coming()->Arrived();
    Account(req, outcome);
    return SendStoreResponse(assoc_, pres_id, req, dimse::ForIngest(outcome.code), outcome.error_comment);
  }

  // A segment copy no row will name (Ingest::SegmentCopyUnneeded): its trailer voided, so that
  // the start-up scan does not offer it to Ingest again.
  bool VoidUnnamedCopy(const std::string& segment_object) {
    std::string segment;
    uint64_t offset = 0, length = 0;
    if (!ObjectStore::ParseInSegmentPath(segment_object, &segment, &offset, &length)) return false;
    if (Status s = VoidSegmentTrailer(env_.store.Absolute(segment), offset, length, SegmentPool::kAlign); !s.ok()) {
      spdlog::warn("cannot void the trailer of the unneeded copy {}: {}", segment_object, s.ToString());
      return false;
    }
    return true;
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
  std::vector<CommitmentReport> deferred_reports_;
  SegmentPool::Lease segment_{env_.store.segments()};  // given back when the association ends
  uint64_t stored_ = 0, refused_ = 0, bytes_ = 0;
};

}  // namespace

void RunAssociation(T_ASC_Association* assoc, const AssociationEnv& env, TlsPeer tls) {
  Association(assoc, env, std::move(tls)).Run();
}

}  // namespace teleread
