#include "samples/commit_scu.h"

#include <openssl/ssl.h>
#include <memory>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcsequen.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmtls/tlslayer.h"
#include "dcmtk/ofstd/ofstd.h"

#include "common/dicom.h"

namespace teleread::samples {
namespace {

std::string Text(DcmItem& item, const DcmTagKey& tag) {
  OFString v;
  item.findAndGetOFString(tag, v);
  return v.c_str();
}

}  // namespace

CommitReply RequestCommitment(const CommitPeer& peer, const std::vector<std::pair<std::string, std::string>>& instances,
                              const std::string& transaction_uid, bool stay) {
  CommitReply reply;
  T_ASC_Network* net = nullptr;
  T_ASC_Association* assoc = nullptr;
  std::unique_ptr<DcmTLSTransportLayer> tls;
  auto finish = [&](const std::string& error) {
    reply.error = error;
    if (assoc) {
      if (error.empty()) {
        ASC_releaseAssociation(assoc);
      } else {
        ASC_abortAssociation(assoc);
      }
      ASC_destroyAssociation(&assoc);
    }
    if (net) ASC_dropNetwork(&net);
    return reply;
  };
  if (ASC_initializeNetwork(NET_REQUESTOR, 0, 30, &net).bad()) return finish("network");
  if (!peer.tls_key.empty()) {
    tls = std::make_unique<DcmTLSTransportLayer>(NET_REQUESTOR, nullptr, OFTrue);
    if (tls->setTLSProfile(TSP_Profile_BCP195_ND).bad() || tls->activateCipherSuites().bad() ||
        tls->setPrivateKeyFile(peer.tls_key.c_str(), DCF_Filetype_PEM).bad() ||
        // OpenSSL loads the chain: DCMTK 3.6.7's setCertificateFile leaks the certificate's key.
        SSL_CTX_use_certificate_chain_file(tls->getNativeHandle(), peer.tls_certificate.c_str()) != 1 ||
        tls->addTrustedCertificateFile(peer.tls_ca.c_str(), DCF_Filetype_PEM).bad()) {
      return finish("TLS set-up");
    }
    tls->setCertificateVerification(DCV_requireCertificate);
    if (ASC_setTransportLayer(net, tls.get(), 0).bad()) return finish("TLS transport");
  }
  T_ASC_Parameters* params = nullptr;
  ASC_createAssociationParameters(&params, ASC_DEFAULTMAXPDU);
  if (tls) ASC_setTransportLayerType(params, OFTrue);
  ASC_setAPTitles(params, peer.calling_ae.c_str(), peer.called_ae.c_str(), nullptr);
  ASC_setPresentationAddresses(params, "localhost", (peer.host + ":" + std::to_string(peer.port)).c_str());
  const char* syntaxes[] = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};
  ASC_addPresentationContext(params, 1, UID_StorageCommitmentPushModelSOPClass, syntaxes, 2,
                             stay ? ASC_SC_ROLE_SCUSCP : ASC_SC_ROLE_DEFAULT);
  OFCondition cond = ASC_requestAssociation(net, params, &assoc);
  if (cond.bad()) {
    if (!assoc) ASC_destroyAssociationParameters(&params);
    return finish(std::string("association: ") + cond.text());
  }
  const T_ASC_PresentationContextID pres =
      ASC_findAcceptedPresentationContextID(assoc, UID_StorageCommitmentPushModelSOPClass);
  if (pres == 0) return finish("storage commitment was not accepted");

  DcmDataset info;
  info.putAndInsertString(DCM_TransactionUID, transaction_uid.c_str());
  for (const auto& [cls, inst] : instances) {
    DcmItem* item = nullptr;
    info.findOrCreateSequenceItem(DCM_ReferencedSOPSequence, item, -2);
    item->putAndInsertString(DCM_ReferencedSOPClassUID, cls.c_str());
    item->putAndInsertString(DCM_ReferencedSOPInstanceUID, inst.c_str());
  }
  T_DIMSE_Message msg{};
  msg.CommandField = DIMSE_N_ACTION_RQ;
  T_DIMSE_N_ActionRQ& rq = msg.msg.NActionRQ;
  rq.MessageID = assoc->nextMsgID++;
  OFStandard::strlcpy(rq.RequestedSOPClassUID, UID_StorageCommitmentPushModelSOPClass, sizeof rq.RequestedSOPClassUID);
  OFStandard::strlcpy(rq.RequestedSOPInstanceUID, UID_StorageCommitmentPushModelSOPInstance,
                      sizeof rq.RequestedSOPInstanceUID);
  rq.ActionTypeID = 1;
  rq.DataSetType = DIMSE_DATASET_PRESENT;
  cond = DIMSE_sendMessageUsingMemoryData(assoc, pres, &msg, nullptr, &info, nullptr, nullptr);
  if (cond.bad()) return finish(std::string("N-ACTION: ") + cond.text());
  T_DIMSE_Message rsp{};
  T_ASC_PresentationContextID rsp_pres = 0;
  DcmDataset* detail = nullptr;
  cond = DIMSE_receiveCommand(assoc, DIMSE_BLOCKING, 0, &rsp_pres, &rsp, &detail);
  delete detail;
  if (cond.bad() || rsp.CommandField != DIMSE_N_ACTION_RSP) return finish("no N-ACTION response");
  reply.action_status = rsp.msg.NActionRSP.DimseStatus;
  if (!stay || reply.action_status != 0) return finish("");

  T_DIMSE_Message event{};
  cond = DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING, 30, &rsp_pres, &event, nullptr);
  if (cond.bad() || event.CommandField != DIMSE_N_EVENT_REPORT_RQ) return finish("no N-EVENT-REPORT");
  DcmDataset* report = nullptr;
  cond = DIMSE_receiveDataSetInMemory(assoc, DIMSE_NONBLOCKING, 30, &rsp_pres, &report, nullptr, nullptr);
  if (cond.bad() || !report) return finish("no N-EVENT-REPORT data set");
  reply.event_type = event.msg.NEventReportRQ.EventTypeID;
  reply.transaction_uid = Text(*report, DCM_TransactionUID);
  DcmSequenceOfItems* seq = nullptr;
  if (report->findAndGetSequence(DCM_ReferencedSOPSequence, seq).good() && seq) {
    for (unsigned long i = 0; i < seq->card(); ++i)
      reply.committed.push_back(Text(*seq->getItem(i), DCM_ReferencedSOPInstanceUID));
  }
  seq = nullptr;
  if (report->findAndGetSequence(DCM_FailedSOPSequence, seq).good() && seq) {
    for (unsigned long i = 0; i < seq->card(); ++i) {
      Uint16 reason = 0;
      seq->getItem(i)->findAndGetUint16(DCM_FailureReason, reason);
      reply.failed.emplace_back(Text(*seq->getItem(i), DCM_ReferencedSOPInstanceUID), reason);
    }
  }
  delete report;
  T_DIMSE_Message ack{};
  ack.CommandField = DIMSE_N_EVENT_REPORT_RSP;
  T_DIMSE_N_EventReportRSP& er = ack.msg.NEventReportRSP;
  er.MessageIDBeingRespondedTo = event.msg.NEventReportRQ.MessageID;
  er.DimseStatus = STATUS_Success;
  er.DataSetType = DIMSE_DATASET_NULL;
  er.EventTypeID = event.msg.NEventReportRQ.EventTypeID;
  OFStandard::strlcpy(er.AffectedSOPClassUID, UID_StorageCommitmentPushModelSOPClass, sizeof er.AffectedSOPClassUID);
  OFStandard::strlcpy(er.AffectedSOPInstanceUID, UID_StorageCommitmentPushModelSOPInstance,
                      sizeof er.AffectedSOPInstanceUID);
  er.opts = O_NEVENTREPORT_AFFECTEDSOPCLASSUID | O_NEVENTREPORT_AFFECTEDSOPINSTANCEUID | O_NEVENTREPORT_EVENTTYPEID;
  cond = DIMSE_sendMessageUsingMemoryData(assoc, rsp_pres, &ack, nullptr, nullptr, nullptr, nullptr);
  if (cond.bad()) return finish("N-EVENT-REPORT response");
  return finish("");
}

std::vector<std::pair<std::string, std::string>> InstancesUnder(const std::filesystem::path& dir) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    Result<InstanceSummary> s = ReadInstanceSummary(e.path());
    if (s.ok()) out.emplace_back(s->sop_class_uid, s->sop_instance_uid);
  }
  return out;
}

std::string NewTransactionUid() {
  char uid[100];
  return dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT);
}

}  // namespace teleread::samples
