#pragma once
// A DICOM SCU at the PDV level for the odd-input tests: commands and data sets go out as the
// bytes given, so that objects and identifiers DCMTK would never encode can be sent.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdatset.h"
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/dul.h"

namespace teleread::test {

constexpr int kAborted = -1;  // the association broke instead of answering

// The bytes of a data set (no meta header) in `xfer`, as they go over the wire.
inline std::string EncodeDataSet(DcmDataset& ds, E_TransferSyntax xfer) {
  ds.transferInit();
  const uint32_t length = ds.calcElementLength(xfer, EET_ExplicitLength);
  std::string buffer(length + 4096, '\0');
  DcmOutputBufferStream out(buffer.data(), buffer.size());
  OFCondition cond = ds.write(out, xfer, EET_ExplicitLength, nullptr);
  ds.transferEnd();
  if (cond.bad()) return "";
  void* data = nullptr;
  offile_off_t written = 0;
  out.flushBuffer(data, written);
  buffer.resize(static_cast<size_t>(written));
  return buffer;
}

// A STUDY level C-FIND identifier asking for PatientID (and StudyInstanceUID), explicit VR LE.
inline std::string StudyKeys(bool with_study_uid = true) {
  DcmDataset keys;
  keys.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
  keys.putAndInsertString(DCM_PatientID, "");
  if (with_study_uid) keys.putAndInsertString(DCM_StudyInstanceUID, "");
  return EncodeDataSet(keys, EXS_LittleEndianExplicit);
}

// A C-STORE SCU at the PDV level: the command and the data set bytes go out as given, in
// fragments of the negotiated size, so that objects DCMTK would never encode can be sent.
// Each presentation context is proposed with exactly one transfer syntax.
class RawStoreScu {
 public:
  struct Context {
    std::string sop_class;
    std::string transfer_syntax;
    bool scp_role = false;  // also proposed as SCP, to take a C-GET's C-STORE sub-operations
  };

  // How a C-FIND, C-MOVE or C-GET ended.
  struct Outcome {
    int status = kAborted;  // the final status, or kAborted
    int pending = 0;        // pending responses before it
    int stores = 0;         // C-STORE sub-operations taken on this association (C-GET)
    int remaining = -1, completed = -1, failed = -1, warning = -1;  // the final counts; -1: not sent
    std::string error_comment;
  };
  // When a C-CANCEL goes out. "In the same TCP segment" makes the order in which the centre
  // reads it certain: it is in the socket before the centre could look for it.
  struct CancelAt {
    bool with_request = false;                       // in the request's segment, before any response
    int with_store_answer = 0;                       // C-GET: in the segment of the answer to the n-th C-STORE
    std::function<void(int pending)> after_pending;  // after each pending response; may call Cancel()
  };

  RawStoreScu(uint16_t port, std::string calling_ae, std::vector<Context> contexts)
      : port_(port), calling_ae_(std::move(calling_ae)), contexts_(std::move(contexts)) {}
  ~RawStoreScu() { Drop(true); }
  RawStoreScu(const RawStoreScu&) = delete;
  RawStoreScu& operator=(const RawStoreScu&) = delete;

  // Empty on success, else why the association failed.
  std::string Connect() {
    Drop(true);
    OFCondition cond = ASC_initializeNetwork(NET_REQUESTOR, 0, 30, &net_);
    if (cond.bad()) return cond.text();
    T_ASC_Parameters* params = nullptr;
    ASC_createAssociationParameters(&params, ASC_DEFAULTMAXPDU);
    ASC_setAPTitles(params, calling_ae_.c_str(), "LX_READ", nullptr);
    const std::string peer = "127.0.0.1:" + std::to_string(port_);
    ASC_setPresentationAddresses(params, "localhost", peer.c_str());
    for (size_t i = 0; i < contexts_.size(); ++i) {
      const char* ts[] = {contexts_[i].transfer_syntax.c_str()};
      ASC_addPresentationContext(params, static_cast<T_ASC_PresentationContextID>(2 * i + 1),
                                 contexts_[i].sop_class.c_str(), ts, 1,
                                 contexts_[i].scp_role ? ASC_SC_ROLE_SCUSCP : ASC_SC_ROLE_DEFAULT);
    }
    cond = ASC_requestAssociation(net_, params, &assoc_);
    if (cond.bad()) {
      if (assoc_ == nullptr) ASC_destroyAssociationParameters(&params);
      return cond.text();
    }
    for (size_t i = 0; i < contexts_.size(); ++i) {
      T_ASC_PresentationContext pc;
      if (ASC_findAcceptedPresentationContext(assoc_->params, static_cast<T_ASC_PresentationContextID>(2 * i + 1), &pc)
              .bad()) {
        return "presentation context " + std::to_string(2 * i + 1) + " (" + contexts_[i].transfer_syntax +
               ") was not accepted";
      }
    }
    return "";
  }

  bool connected() const { return assoc_ != nullptr; }

  // Sends `dataset` (any bytes) on context number `context`; returns the C-STORE status, or
  // kAborted when the association broke (it is then dropped). With `stall_after`, only that
  // many bytes of the data set go out, none marked last, and then it waits for an answer.
  int Store(size_t context, const std::string& sop_class, const std::string& sop_instance, const std::string& dataset,
            std::string* error_comment, size_t stall_after = std::string::npos) {
    const auto pres_id = static_cast<T_ASC_PresentationContextID>(2 * context + 1);
    const uint16_t message_id = next_message_id_++;
    if (!Send(pres_id, Command(0x0001, sop_class, message_id, sop_instance), dataset, stall_after)) return Abort();
    T_DIMSE_Message rsp{};
    T_ASC_PresentationContextID rsp_pres = 0;
    if (!ReceiveResponse(&rsp, &rsp_pres, error_comment) || rsp.CommandField != DIMSE_C_STORE_RSP) return Abort();
    if (rsp.msg.CStoreRSP.MessageIDBeingRespondedTo != message_id) return Abort();
    return rsp.msg.CStoreRSP.DimseStatus;
  }

  // Sends a C-FIND-RQ (0x0020), C-MOVE-RQ (0x0021, to `move_destination`) or C-GET-RQ (0x0010)
  // with `identifier` (any bytes) on context number `context`; returns the final status, or
  // kAborted. Pending responses are counted in `pending`.
  int Query(size_t context, uint16_t command_field, const std::string& sop_class, const std::string& identifier,
            std::string* error_comment, int* pending, const std::string& move_destination = "") {
    Outcome o = Retrieve(context, command_field, sop_class, identifier, move_destination);
    *pending = o.pending;
    if (error_comment && !o.error_comment.empty()) *error_comment = o.error_comment;
    return o.status;
  }

  // As Query, with the whole outcome, C-STORE sub-operations answered Success, and a C-CANCEL
  // sent as `cancel` says.
  Outcome Retrieve(size_t context, uint16_t command_field, const std::string& sop_class, const std::string& identifier,
                   const std::string& move_destination = "") {
    return Retrieve(context, command_field, sop_class, identifier, move_destination, CancelAt());
  }
  Outcome Retrieve(size_t context, uint16_t command_field, const std::string& sop_class, const std::string& identifier,
                   const std::string& move_destination, const CancelAt& cancel) {
    Outcome out;
    pres_id_ = static_cast<T_ASC_PresentationContextID>(2 * context + 1);
    message_id_ = next_message_id_++;
    const std::string command = Command(command_field, sop_class, message_id_, "", move_destination);
    if (!(cancel.with_request ? Corked([&] { return Send(pres_id_, command, identifier) && Cancel(); })
                              : Send(pres_id_, command, identifier))) {
      Abort();
      return out;
    }
    for (;;) {
      T_DIMSE_Message rsp{};
      T_ASC_PresentationContextID rsp_pres = 0;
      if (!ReceiveResponse(&rsp, &rsp_pres, &out.error_comment)) break;
      if (rsp.CommandField == DIMSE_C_STORE_RQ) {
        if (!AnswerStore(rsp.msg.CStoreRQ, rsp_pres, ++out.stores == cancel.with_store_answer)) break;
        continue;
      }
      uint16_t status = 0;
      bool has_data = false;
      if (rsp.CommandField == DIMSE_C_FIND_RSP) {
        status = rsp.msg.CFindRSP.DimseStatus;
        has_data = rsp.msg.CFindRSP.DataSetType != DIMSE_DATASET_NULL;
      } else if (rsp.CommandField == DIMSE_C_MOVE_RSP || rsp.CommandField == DIMSE_C_GET_RSP) {
        // The two responses have the same fields and option bits.
        auto take = [&](const auto& m) {
          status = m.DimseStatus;
          has_data = m.DataSetType != DIMSE_DATASET_NULL;
          auto count = [&m](unsigned flag, uint16_t value) { return (m.opts & flag) ? int{value} : -1; };
          out.remaining = count(O_MOVE_NUMBEROFREMAININGSUBOPERATIONS, m.NumberOfRemainingSubOperations);
          out.completed = count(O_MOVE_NUMBEROFCOMPLETEDSUBOPERATIONS, m.NumberOfCompletedSubOperations);
          out.failed = count(O_MOVE_NUMBEROFFAILEDSUBOPERATIONS, m.NumberOfFailedSubOperations);
          out.warning = count(O_MOVE_NUMBEROFWARNINGSUBOPERATIONS, m.NumberOfWarningSubOperations);
        };
        if (rsp.CommandField == DIMSE_C_MOVE_RSP) {
          take(rsp.msg.CMoveRSP);
        } else {
          take(rsp.msg.CGetRSP);
        }
      } else {
        break;
      }
      if (has_data) {
        DcmDataset* ids = nullptr;
        if (DIMSE_receiveDataSetInMemory(assoc_, DIMSE_NONBLOCKING, 30, &rsp_pres, &ids, nullptr, nullptr).bad()) {
          break;
        }
        delete ids;
      }
      if (status != 0xFF00 && status != 0xFF01) {
        out.status = status;
        return out;
      }
      ++out.pending;
      if (cancel.after_pending) cancel.after_pending(out.pending);
    }
    Abort();
    out.status = kAborted;
    return out;
  }

  // A C-CANCEL for the request in progress, now.
  bool Cancel() { return DIMSE_sendCancelRequest(assoc_, pres_id_, message_id_).good(); }

  void Release() { Drop(false); }

 private:
  // Answers a C-GET's C-STORE sub-operation Success (with a C-CANCEL in the same segment when
  // `then_cancel`), its data set read and dropped.
  bool AnswerStore(const T_DIMSE_C_StoreRQ& req, T_ASC_PresentationContextID pres_id, bool then_cancel) {
    DcmDataset* ds = nullptr;
    if (DIMSE_receiveDataSetInMemory(assoc_, DIMSE_NONBLOCKING, 30, &pres_id, &ds, nullptr, nullptr).bad()) {
      return false;
    }
    delete ds;
    T_DIMSE_C_StoreRQ request = req;
    T_DIMSE_C_StoreRSP rsp{};
    rsp.MessageIDBeingRespondedTo = req.MessageID;
    rsp.DimseStatus = STATUS_Success;
    rsp.DataSetType = DIMSE_DATASET_NULL;
    OFStandard::strlcpy(rsp.AffectedSOPClassUID, req.AffectedSOPClassUID, sizeof rsp.AffectedSOPClassUID);
    OFStandard::strlcpy(rsp.AffectedSOPInstanceUID, req.AffectedSOPInstanceUID, sizeof rsp.AffectedSOPInstanceUID);
    rsp.opts = O_STORE_AFFECTEDSOPCLASSUID | O_STORE_AFFECTEDSOPINSTANCEUID;
    auto answer = [&] { return DIMSE_sendStoreResponse(assoc_, pres_id, &request, &rsp, nullptr).good(); };
    return then_cancel ? Corked([&] { return answer() && Cancel(); }) : answer();
  }

  // Runs `write` with the socket corked, so that what it writes leaves in one segment.
  template <typename Write>
  bool Corked(Write write) {
    // DCMTK keeps the socket accessor protected; a pointer to it, taken in a subclass, reaches it.
    struct Socket : DcmTransportConnection {
      using DcmTransportConnection::getSocket;
    };
    DcmTransportConnection* connection = DUL_getTransportConnection(assoc_->DULassociation);
    const int fd = connection ? (connection->*(&Socket::getSocket))() : -1;
    int on = 1, off = 0;
    if (fd < 0 || ::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on) != 0) return false;
    const bool ok = write();
    ::setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off);
    return ok;
  }

  // The next response command; its Error Comment, if any, into `error_comment`.
  bool ReceiveResponse(T_DIMSE_Message* rsp, T_ASC_PresentationContextID* pres_id, std::string* error_comment) {
    DcmDataset* detail = nullptr;
    OFCondition cond = DIMSE_receiveCommand(assoc_, DIMSE_NONBLOCKING, 30, pres_id, rsp, &detail);
    if (detail) {
      const char* comment = nullptr;
      if (error_comment && detail->findAndGetString(DCM_ErrorComment, comment).good() && comment) {
        *error_comment = comment;
      }
      delete detail;
    }
    return cond.good();
  }

  static std::string Command(uint16_t field, const std::string& sop_class, uint16_t message_id,
                             const std::string& sop_instance, const std::string& move_destination = "") {
    std::string command;
    auto element = [&command](uint16_t e, const std::string& value) {
      const uint32_t length = static_cast<uint32_t>(value.size());
      const unsigned char head[8] = {0,
                                     0,
                                     static_cast<unsigned char>(e & 0xFF),
                                     static_cast<unsigned char>(e >> 8),
                                     static_cast<unsigned char>(length),
                                     static_cast<unsigned char>(length >> 8),
                                     static_cast<unsigned char>(length >> 16),
                                     static_cast<unsigned char>(length >> 24)};
      command.append(reinterpret_cast<const char*>(head), sizeof head);
      command += value;
    };
    auto padded = [](std::string text, char pad) {
      if (text.size() % 2) text.push_back(pad);
      return text;
    };
    auto us = [](uint16_t v) { return std::string{static_cast<char>(v & 0xFF), static_cast<char>(v >> 8)}; };
    element(0x0002, padded(sop_class, '\0'));
    element(0x0100, us(field));
    element(0x0110, us(message_id));
    if (!move_destination.empty()) element(0x0600, padded(move_destination, ' '));
    element(0x0700, us(0x0000));  // medium priority
    element(0x0800, us(0x0000));  // a data set follows
    if (!sop_instance.empty()) element(0x1000, padded(sop_instance, '\0'));
    const uint32_t group_length = static_cast<uint32_t>(command.size());
    std::string with_length;
    command.swap(with_length);
    element(0x0000, std::string{static_cast<char>(group_length), static_cast<char>(group_length >> 8),
                                static_cast<char>(group_length >> 16), static_cast<char>(group_length >> 24)});
    return command + with_length;
  }

  // The command, then the data set in fragments of the negotiated size (only `stall_after`
  // bytes of it, none marked last, when given).
  bool Send(T_ASC_PresentationContextID pres_id, const std::string& command, const std::string& dataset,
            size_t stall_after = std::string::npos) {
    if (!WritePdv(pres_id, DUL_COMMANDPDV, command, 0, command.size(), true)) return false;
    const size_t fragment = std::max<size_t>(1, assoc_->sendPDVLength);
    if (dataset.empty()) return WritePdv(pres_id, DUL_DATASETPDV, dataset, 0, 0, true);
    const size_t end = std::min(stall_after, dataset.size());
    for (size_t at = 0; at < end; at += fragment) {
      const size_t n = std::min(fragment, end - at);
      if (!WritePdv(pres_id, DUL_DATASETPDV, dataset, at, n, at + n == dataset.size())) return false;
    }
    return true;
  }

  bool WritePdv(T_ASC_PresentationContextID pres_id, DUL_DATAPDV type, const std::string& bytes, size_t at, size_t n,
                bool last) {
    DUL_PDV pdv{};
    pdv.fragmentLength = n;
    pdv.presentationContextID = pres_id;
    pdv.pdvType = type;
    pdv.lastPDV = last ? OFTrue : OFFalse;
    pdv.data = const_cast<char*>(bytes.data() + at);
    DUL_PDVLIST list{};
    list.count = 1;
    list.pdv = &pdv;
    return DUL_WritePDVs(&assoc_->DULassociation, &list).good();
  }

  int Abort() {
    Drop(true);
    return kAborted;
  }

  void Drop(bool abort) {
    if (assoc_) {
      if (abort) {
        ASC_abortAssociation(assoc_);
      } else {
        ASC_releaseAssociation(assoc_);
      }
      ASC_destroyAssociation(&assoc_);
    }
    if (net_) ASC_dropNetwork(&net_);
  }

  uint16_t port_;
  std::string calling_ae_;
  std::vector<Context> contexts_;
  T_ASC_Network* net_ = nullptr;
  T_ASC_Association* assoc_ = nullptr;
  uint16_t next_message_id_ = 1;
  T_ASC_PresentationContextID pres_id_ = 0;  // of the request in progress
  uint16_t message_id_ = 0;
};

}  // namespace teleread::test
