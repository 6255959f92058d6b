#include "server/dicom/commitment.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/ofstd/ofstd.h"

#include "common/dicom.h"
#include "common/log.h"
#include "server/dicom/dimse_status.h"
#include "server/dicom/receive.h"

namespace teleread {
namespace {

// PS3.4 J.3.2.1.1 Failure Reasons.
constexpr Uint16 kNoSuchObjectInstance = 0x0112;
constexpr Uint16 kClassInstanceConflict = 0x0119;

constexpr Uint16 kStatusNoSuchAction = 0x0123;
constexpr Uint16 kStatusNoSuchInstance = 0x0112;
constexpr Uint16 kStatusProcessingFailure = 0x0110;

std::string Text(DcmItem& item, const DcmTagKey& tag) {
  OFString v;
  item.findAndGetOFString(tag, v);
  return v.c_str();
}

void AddReference(DcmDataset& ds, const DcmTagKey& sequence, const CommitRequestItem& item,
                  std::optional<Uint16> reason) {
  DcmItem* out = nullptr;
  if (ds.findOrCreateSequenceItem(sequence, out, -2).bad() || !out) return;
  out->putAndInsertString(DCM_ReferencedSOPClassUID, item.sop_class_uid.c_str());
  out->putAndInsertString(DCM_ReferencedSOPInstanceUID, item.sop_instance_uid.c_str());
  if (reason) out->putAndInsertUint16(DCM_FailureReason, *reason);
}

// The Event Information: Event Type 1 when all were committed, 2 when some failed.
Uint16 EventInformation(const CommitmentReport& report, const std::string& centre_ae, DcmDataset& ds) {
  ds.putAndInsertString(DCM_TransactionUID, report.transaction_uid.c_str());
  ds.putAndInsertString(DCM_RetrieveAETitle, centre_ae.c_str());
  for (const CommitRequestItem& c : report.result.committed) AddReference(ds, DCM_ReferencedSOPSequence, c, {});
  for (const auto& [item, why] : report.result.failed) {
    AddReference(ds, DCM_FailedSOPSequence, item,
                 why == CommitFailure::kClassInstanceConflict ? kClassInstanceConflict : kNoSuchObjectInstance);
  }
  return report.result.failed.empty() ? 1 : 2;
}

OFCondition SendEventReport(T_ASC_Association* assoc, unsigned char pres_id, const CommitmentReport& report,
                            const CommitmentEnv& env, uint16_t message_id) {
  DcmDataset info;
  T_DIMSE_Message msg{};
  msg.CommandField = DIMSE_N_EVENT_REPORT_RQ;
  T_DIMSE_N_EventReportRQ& rq = msg.msg.NEventReportRQ;
  rq.MessageID = message_id;
  OFStandard::strlcpy(rq.AffectedSOPClassUID, UID_StorageCommitmentPushModelSOPClass, sizeof rq.AffectedSOPClassUID);
  OFStandard::strlcpy(rq.AffectedSOPInstanceUID, UID_StorageCommitmentPushModelSOPInstance,
                      sizeof rq.AffectedSOPInstanceUID);
  rq.EventTypeID = EventInformation(report, env.centre_ae, info);
  rq.DataSetType = DIMSE_DATASET_PRESENT;
  OFCondition cond = DIMSE_sendMessageUsingMemoryData(assoc, pres_id, &msg, nullptr, &info, nullptr, nullptr);
  if (cond.bad()) return cond;
  T_DIMSE_Message rsp{};
  T_ASC_PresentationContextID rsp_pres = 0;
  DcmDataset* detail = nullptr;
  cond = DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING, env.timeout_seconds, &rsp_pres, &rsp, &detail);
  delete detail;
  if (cond.bad()) return cond;
  if (rsp.CommandField != DIMSE_N_EVENT_REPORT_RSP) return DIMSE_BADCOMMANDTYPE;
  if (rsp.msg.NEventReportRSP.DimseStatus != STATUS_Success) {
    spdlog::warn("storage commitment {}: {} answered the report with 0x{:04X}", report.transaction_uid,
                 report.member_id, rsp.msg.NEventReportRSP.DimseStatus);
  }
  return cond;
}

}  // namespace

OFCondition ServeCommitment(T_ASC_Association* assoc, unsigned char pres_id, const T_DIMSE_N_ActionRQ& req,
                            const Caller& caller, const CommitmentEnv& env, std::optional<CommitmentReport>* deferred) {
  Uint16 status = STATUS_Success;
  std::string why;
  CommitmentReport report{caller.member_id, "", {}};
  if (req.DataSetType == DIMSE_DATASET_NULL) {
    status = kStatusProcessingFailure;
    why = "no Action Information";
  } else {
    ReceivedDataSet received;
    OFCondition cond = ReceiveDataSet(assoc, pres_id, UID_StorageCommitmentPushModelSOPClass,
                                      req.RequestedSOPInstanceUID, env.store, env.timeout_seconds, false, &received);
    if (cond.bad()) return cond;
    TempFileGuard guard(received.path);
    std::vector<CommitRequestItem> items;
    if (received.path.empty()) {
      status = kStatusProcessingFailure;
      why = "cannot receive the request: storage";
    } else if (Result<std::unique_ptr<DicomFile>> file = DicomFile::Open(received.path, 1024, true); !file.ok()) {
      status = kStatusProcessingFailure;
      why = "the Action Information cannot be parsed";
    } else {
      DcmDataset& ds = file.value()->dataset();
      report.transaction_uid = Text(ds, DCM_TransactionUID);
      DcmSequenceOfItems* seq = nullptr;
      if (ds.findAndGetSequence(DCM_ReferencedSOPSequence, seq).good() && seq) {
        for (unsigned long i = 0; i < seq->card(); ++i) {
          DcmItem* item = seq->getItem(i);
          items.push_back({Text(*item, DCM_ReferencedSOPClassUID), Text(*item, DCM_ReferencedSOPInstanceUID)});
        }
      }
    }
    if (status == STATUS_Success && req.ActionTypeID != 1) {
      status = kStatusNoSuchAction;
      why = "Action Type ID must be 1 (Request Storage Commitment)";
    } else if (status == STATUS_Success &&
               std::string(req.RequestedSOPInstanceUID) != UID_StorageCommitmentPushModelSOPInstance) {
      status = kStatusNoSuchInstance;
      why = "the Requested SOP Instance must be the well-known 1.2.840.10008.1.20.1.1";
    } else if (status == STATUS_Success) {
      Result<CommitResult> r = env.service.Commit(caller.member_id, caller.ae_title, report.transaction_uid, items);
      if (r.ok()) {
        report.result = std::move(r.value());
      } else {
        status = kStatusProcessingFailure;
        why = r.status().message();
      }
    }
  }
  T_DIMSE_Message msg{};
  msg.CommandField = DIMSE_N_ACTION_RSP;
  T_DIMSE_N_ActionRSP& rsp = msg.msg.NActionRSP;
  rsp.MessageIDBeingRespondedTo = req.MessageID;
  rsp.DimseStatus = status;
  rsp.DataSetType = DIMSE_DATASET_NULL;
  rsp.ActionTypeID = req.ActionTypeID;
  OFStandard::strlcpy(rsp.AffectedSOPClassUID, UID_StorageCommitmentPushModelSOPClass, sizeof rsp.AffectedSOPClassUID);
  OFStandard::strlcpy(rsp.AffectedSOPInstanceUID, req.RequestedSOPInstanceUID, sizeof rsp.AffectedSOPInstanceUID);
  rsp.opts = O_NACTION_AFFECTEDSOPCLASSUID | O_NACTION_AFFECTEDSOPINSTANCEUID | O_NACTION_ACTIONTYPEID;
  DcmDataset detail;
  if (!why.empty()) {
    spdlog::warn("storage commitment from {} refused: {}", caller.ae_title, why);
    dimse::SetErrorComment(detail, why);
  }
  OFCondition cond = DIMSE_sendMessageUsingMemoryData(assoc, pres_id, &msg, why.empty() ? nullptr : &detail, nullptr,
                                                      nullptr, nullptr);
  if (cond.bad() || status != STATUS_Success) return cond;

  T_ASC_PresentationContext pc;
  ASC_findAcceptedPresentationContext(assoc->params, pres_id, &pc);
  if (pc.proposedRole == ASC_SC_ROLE_SCUSCP) return SendEventReport(assoc, pres_id, report, env, 1);
  *deferred = std::move(report);
  return cond;
}

void SendCommitmentReport(const CommitmentReport& report, const CommitmentEnv& env) {
  const Member* member = nullptr;
  for (const Member& m : env.config.members) {
    if (m.id == report.member_id) member = &m;
  }
  if (!member || !member->delivery) {
    spdlog::error("storage commitment {}: member {} has no delivery AE to send the report to", report.transaction_uid,
                  report.member_id);
    return;
  }
  const DeliveryTarget& target = *member->delivery;
  DcmTransportLayer* layer = env.tls && target.tls ? env.tls->ClientLayer(target) : nullptr;
  if (target.tls && !layer) {
    spdlog::error("storage commitment {}: {} wants TLS, which is not set up", report.transaction_uid, target.ae_title);
    return;
  }
  T_ASC_Network* net = nullptr;
  OFCondition cond = ASC_initializeNetwork(NET_REQUESTOR, 0, env.timeout_seconds, &net);
  if (cond.good() && layer) cond = ASC_setTransportLayer(net, layer, 0);
  T_ASC_Association* assoc = nullptr;
  if (cond.good()) {
    T_ASC_Parameters* params = nullptr;
    ASC_createAssociationParameters(&params, ASC_DEFAULTMAXPDU);
    if (layer) ASC_setTransportLayerType(params, OFTrue);
    ASC_setAPTitles(params, env.centre_ae.c_str(), target.ae_title.c_str(), nullptr);
    const std::string peer = target.host + ":" + std::to_string(target.port);
    ASC_setPresentationAddresses(params, OFStandard::getHostName().c_str(), peer.c_str());
    const char* syntaxes[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};
    // The association requester here is the commitment SCP: it proposes the SCP role (PS3.4 J.3.3).
    ASC_addPresentationContext(params, 1, UID_StorageCommitmentPushModelSOPClass, syntaxes, 2, ASC_SC_ROLE_SCP);
    cond = ASC_requestAssociation(net, params, &assoc);
    if (cond.bad() && !assoc) ASC_destroyAssociationParameters(&params);
  }
  if (cond.good()) {
    const T_ASC_PresentationContextID pres =
        ASC_findAcceptedPresentationContextID(assoc, UID_StorageCommitmentPushModelSOPClass);
    cond = pres == 0 ? DIMSE_NOVALIDPRESENTATIONCONTEXTID : SendEventReport(assoc, pres, report, env, 1);
    if (cond.good()) ASC_releaseAssociation(assoc);
  }
  if (cond.bad()) {
    spdlog::error("storage commitment {}: report to {} at {}:{} failed: {}", report.transaction_uid, target.ae_title,
                  target.host, target.port, cond.text());
    if (assoc) ASC_abortAssociation(assoc);
  } else {
    spdlog::info("storage commitment {}: report sent to {} ({} committed, {} failed)", report.transaction_uid,
                 target.ae_title, report.result.committed.size(), report.result.failed.size());
  }
  if (assoc) ASC_destroyAssociation(&assoc);
  if (net) ASC_dropNetwork(&net);
}

}  // namespace teleread
