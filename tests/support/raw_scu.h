#pragma once
// A DICOM SCU at the PDV level for the odd-input tests: commands and data sets go out as the
// bytes given, so that objects and identifiers DCMTK would never encode can be sent.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/dul.h"

namespace teleread::test {

constexpr int kAborted = -1;  // the association broke instead of answering

// A C-STORE SCU at the PDV level: the command and the data set bytes go out as given, in
// fragments of the negotiated size, so that objects DCMTK would never encode can be sent.
// Each presentation context is proposed with exactly one transfer syntax.
class RawStoreScu {
 public:
  struct Context {
    std::string sop_class;
    std::string transfer_syntax;
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
                                 contexts_[i].sop_class.c_str(), ts, 1);
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
    const auto pres_id = static_cast<T_ASC_PresentationContextID>(2 * context + 1);
    const uint16_t message_id = next_message_id_++;
    if (!Send(pres_id, Command(command_field, sop_class, message_id, "", move_destination), identifier)) {
      return Abort();
    }
    for (*pending = 0;;) {
      T_DIMSE_Message rsp{};
      T_ASC_PresentationContextID rsp_pres = 0;
      if (!ReceiveResponse(&rsp, &rsp_pres, error_comment)) return Abort();
      uint16_t status = 0;
      bool has_data = false;
      if (rsp.CommandField == DIMSE_C_FIND_RSP) {
        status = rsp.msg.CFindRSP.DimseStatus;
        has_data = rsp.msg.CFindRSP.DataSetType != DIMSE_DATASET_NULL;
      } else if (rsp.CommandField == DIMSE_C_MOVE_RSP) {
        status = rsp.msg.CMoveRSP.DimseStatus;
        has_data = rsp.msg.CMoveRSP.DataSetType != DIMSE_DATASET_NULL;
      } else if (rsp.CommandField == DIMSE_C_GET_RSP) {
        status = rsp.msg.CGetRSP.DimseStatus;
        has_data = rsp.msg.CGetRSP.DataSetType != DIMSE_DATASET_NULL;
      } else {
        return Abort();  // a C-GET's C-STORE sub-operations are not taken here
      }
      if (has_data) {
        DcmDataset* ids = nullptr;
        if (DIMSE_receiveDataSetInMemory(assoc_, DIMSE_NONBLOCKING, 30, &rsp_pres, &ids, nullptr, nullptr).bad()) {
          return Abort();
        }
        delete ids;
      }
      if (status != 0xFF00 && status != 0xFF01) return status;
      ++*pending;
    }
  }

  void Release() { Drop(false); }

 private:
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
};

}  // namespace teleread::test
