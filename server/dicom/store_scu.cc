#include "server/dicom/store_scu.h"

#include <algorithm>
#include <cstdio>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/ofstd/ofstd.h"

namespace teleread {
namespace {

bool IsNativeSyntax(const std::string& ts) { return !DcmXfer(ts.c_str()).isEncapsulated(); }

bool PeerIsScp(const T_ASC_PresentationContext& pc, bool by_role) {
  if (!by_role) return true;
  return pc.acceptedRole == ASC_SC_ROLE_SCP || pc.acceptedRole == ASC_SC_ROLE_SCUSCP;
}

}  // namespace

uint8_t ContextForSending(T_ASC_Association* assoc, const std::string& sop_class, const std::string& ts, bool by_role) {
  uint8_t fallback = 0;
  const int n = ASC_countPresentationContexts(assoc->params);
  for (int i = 0; i < n; ++i) {
    T_ASC_PresentationContext pc;
    if (ASC_getPresentationContext(assoc->params, i, &pc).bad()) continue;
    if (pc.resultReason != ASC_P_ACCEPTANCE || sop_class != pc.abstractSyntax || !PeerIsScp(pc, by_role)) continue;
    if (ts == pc.acceptedTransferSyntax) return pc.presentationContextID;
    if (fallback == 0 && IsNativeSyntax(ts) && IsNativeSyntax(pc.acceptedTransferSyntax) &&
        std::string(pc.acceptedTransferSyntax) != UID_DeflatedExplicitVRLittleEndianTransferSyntax) {
      fallback = pc.presentationContextID;
    }
  }
  return fallback;
}

StoreResult SendStoredFile(T_ASC_Association* assoc, uint8_t pres_id, uint16_t message_id, const std::string& file,
                           const std::string& sop_class, const std::string& sop_instance,
                           const std::string& originator_ae, uint16_t originator_message_id, int timeout) {
  return SendWithDcmtk(assoc, pres_id, message_id, file.c_str(), nullptr, sop_class, sop_instance, originator_ae,
                       originator_message_id, timeout);
}

StoreResult SendWithDcmtk(T_ASC_Association* assoc, uint8_t pres_id, uint16_t message_id, const char* file,
                          DcmDataset* dataset, const std::string& sop_class, const std::string& sop_instance,
                          const std::string& originator_ae, uint16_t originator_message_id, int timeout) {
  StoreResult result;
  T_DIMSE_C_StoreRQ req{};
  req.MessageID = message_id;
  OFStandard::strlcpy(req.AffectedSOPClassUID, sop_class.c_str(), sizeof req.AffectedSOPClassUID);
  OFStandard::strlcpy(req.AffectedSOPInstanceUID, sop_instance.c_str(), sizeof req.AffectedSOPInstanceUID);
  req.DataSetType = DIMSE_DATASET_PRESENT;
  req.Priority = DIMSE_PRIORITY_MEDIUM;
  if (!originator_ae.empty()) {
    req.opts = O_STORE_MOVEORIGINATORAETITLE | O_STORE_MOVEORIGINATORID;
    OFStandard::strlcpy(req.MoveOriginatorApplicationEntityTitle, originator_ae.c_str(),
                        sizeof req.MoveOriginatorApplicationEntityTitle);
    req.MoveOriginatorID = originator_message_id;
  }
  T_DIMSE_C_StoreRSP rsp{};
  DcmDataset* detail = nullptr;
  OFCondition cond =
      DIMSE_storeUser(assoc, pres_id, &req, file, dataset, nullptr, nullptr, DIMSE_NONBLOCKING, timeout, &rsp, &detail);
  if (cond.bad()) {
    result.error = cond.text();
    // A file that cannot be read fails this object only; a network error ends the association.
    result.association_lost = !(cond == DIMSE_BADDATA) && cond.module() == OFM_dcmnet;
  } else {
    TakeStoreResponse(rsp.DimseStatus, detail, &result);
  }
  delete detail;
  return result;
}

void TakeStoreResponse(uint16_t status, DcmDataset* detail, StoreResult* result) {
  result->status = status;
  if (status != STATUS_Success && detail != nullptr) {
    const char* comment = nullptr;
    if (detail->findAndGetString(DCM_ErrorComment, comment).good() && comment) result->error = comment;
  }
  if (status != STATUS_Success && result->error.empty()) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%04X", status);
    result->error = std::string("refused with status ") + hex;
  }
}

struct StoreScu::Impl {
  std::string calling_ae;
  DeliveryTarget target;
  int timeout;
  DcmTransportLayer* tls;
  T_ASC_Network* net = nullptr;
  T_ASC_Association* assoc = nullptr;
  uint16_t next_message_id = 1;
};

StoreScu::StoreScu(std::string calling_ae, DeliveryTarget target, int timeout_seconds, DcmTransportLayer* tls)
    : impl_(new Impl{std::move(calling_ae), std::move(target), timeout_seconds, tls}) {}

StoreScu::~StoreScu() {
  Release();
  if (impl_->net) ASC_dropNetwork(&impl_->net);
}

Status StoreScu::Connect(const std::vector<std::pair<std::string, std::string>>& pairs, bool with_query) {
  if (impl_->target.tls && !impl_->tls) {
    return Status::InvalidArgument(impl_->target.ae_title + " wants TLS but no TLS context was set up for it");
  }
  OFCondition cond = ASC_initializeNetwork(NET_REQUESTOR, 0, impl_->timeout, &impl_->net);
  if (cond.bad()) return Status::IOError(std::string("network: ") + cond.text());
  if (impl_->tls) {
    cond = ASC_setTransportLayer(impl_->net, impl_->tls, 0);
    if (cond.bad()) return Status::IOError(std::string("TLS transport: ") + cond.text());
  }
  T_ASC_Parameters* params = nullptr;
  ASC_createAssociationParameters(&params, ASC_DEFAULTMAXPDU);
  if (impl_->tls) ASC_setTransportLayerType(params, OFTrue);
  ASC_setAPTitles(params, impl_->calling_ae.c_str(), impl_->target.ae_title.c_str(), nullptr);
  const std::string peer = impl_->target.host + ":" + std::to_string(impl_->target.port);
  ASC_setPresentationAddresses(params, OFStandard::getHostName().c_str(), peer.c_str());
  T_ASC_PresentationContextID id = 1;
  auto add = [&](const std::string& sop_class, std::vector<const char*> syntaxes) {
    if (id > 253) return;
    ASC_addPresentationContext(params, id, sop_class.c_str(), syntaxes.data(), static_cast<int>(syntaxes.size()));
    id += 2;
  };
  std::vector<std::string> native_offered;
  for (const auto& [sop_class, ts] : pairs) {
    add(sop_class, {ts.c_str()});
    // A second context lets a peer that cannot take the stored native encoding take another.
    if (IsNativeSyntax(ts) &&
        std::find(native_offered.begin(), native_offered.end(), sop_class) == native_offered.end()) {
      native_offered.push_back(sop_class);
      add(sop_class, {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax});
    }
  }
  if (with_query) {
    add(UID_FINDStudyRootQueryRetrieveInformationModel,
        {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax});
  }
  cond = ASC_requestAssociation(impl_->net, params, &impl_->assoc);
  if (cond.bad()) {
    if (impl_->assoc) {
      ASC_destroyAssociation(&impl_->assoc);
    } else {
      ASC_destroyAssociationParameters(&params);
    }
    return Status::IOError("association with " + impl_->target.ae_title + " at " + peer + " failed: " + cond.text());
  }
  if (ASC_countAcceptedPresentationContexts(impl_->assoc->params) == 0) {
    Release();
    return Status::InvalidArgument(impl_->target.ae_title + " accepted no presentation context");
  }
  return Status::Ok();
}

StoreResult StoreScu::Store(const std::string& file, const std::string& sop_class, const std::string& sop_instance,
                            const std::string& ts, const std::string& move_originator_ae,
                            uint16_t move_originator_message_id) {
  return Store(ObjectHandle::File(file), sop_class, sop_instance, ts, move_originator_ae, move_originator_message_id);
}

StoreResult StoreScu::Store(const ObjectHandle& object, const std::string& sop_class, const std::string& sop_instance,
                            const std::string& ts, const std::string& move_originator_ae,
                            uint16_t move_originator_message_id) {
  StoreResult r;
  if (!impl_->assoc) {
    r.error = "not connected";
    r.association_lost = true;
    return r;
  }
  uint8_t pres_id = ContextForSending(impl_->assoc, sop_class, ts, false);
  if (pres_id == 0) {
    r.error = impl_->target.ae_title + " accepted no context for this SOP class in " + ts;
    return r;
  }
  return SendStoredObject(impl_->assoc, pres_id, impl_->next_message_id++, object, sop_class, sop_instance,
                          move_originator_ae, move_originator_message_id, impl_->timeout);
}

Result<bool> StoreScu::Holds(const std::string& study_uid, const std::string& series_uid,
                             const std::string& sop_instance) {
  if (!impl_->assoc) return Status::IOError("not connected");
  const T_ASC_PresentationContextID pres_id =
      ASC_findAcceptedPresentationContextID(impl_->assoc, UID_FINDStudyRootQueryRetrieveInformationModel);
  if (pres_id == 0) return Status::InvalidArgument(impl_->target.ae_title + " does not answer Study Root C-FIND");
  DcmDataset keys;
  keys.putAndInsertString(DCM_QueryRetrieveLevel, "IMAGE");
  keys.putAndInsertString(DCM_StudyInstanceUID, study_uid.c_str());
  keys.putAndInsertString(DCM_SeriesInstanceUID, series_uid.c_str());
  keys.putAndInsertString(DCM_SOPInstanceUID, sop_instance.c_str());
  T_DIMSE_C_FindRQ req{};
  req.MessageID = impl_->next_message_id++;
  OFStandard::strlcpy(req.AffectedSOPClassUID, UID_FINDStudyRootQueryRetrieveInformationModel,
                      sizeof req.AffectedSOPClassUID);
  req.DataSetType = DIMSE_DATASET_PRESENT;
  req.Priority = DIMSE_PRIORITY_MEDIUM;
  struct Seen {
    const std::string* uid;
    bool found = false;
  } seen{&sop_instance};
  auto on_match = [](void* data, T_DIMSE_C_FindRQ*, int, T_DIMSE_C_FindRSP*, DcmDataset* identifier) {
    auto* s = static_cast<Seen*>(data);
    OFString uid;
    if (identifier && identifier->findAndGetOFString(DCM_SOPInstanceUID, uid).good() && uid == s->uid->c_str()) {
      s->found = true;
    }
  };
  int responses = 0;
  T_DIMSE_C_FindRSP rsp{};
  DcmDataset* detail = nullptr;
  OFCondition cond = DIMSE_findUser(impl_->assoc, pres_id, &req, &keys, responses, on_match, &seen, DIMSE_NONBLOCKING,
                                    impl_->timeout, &rsp, &detail);
  delete detail;
  if (seen.found) return true;  // whatever ended the query, the member has it
  if (cond.bad()) return Status::IOError(std::string("C-FIND failed: ") + cond.text());
  if (rsp.DimseStatus != STATUS_Success) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%04X", rsp.DimseStatus);
    return Status::IOError(std::string("C-FIND refused with status ") + hex);
  }
  return false;
}

void StoreScu::Release() {
  if (!impl_->assoc) return;
  if (ASC_releaseAssociation(impl_->assoc).bad()) ASC_abortAssociation(impl_->assoc);
  ASC_dropAssociation(impl_->assoc);
  ASC_destroyAssociation(&impl_->assoc);
}

}  // namespace teleread
