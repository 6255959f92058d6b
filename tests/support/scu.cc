#include "tests/support/scu.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/ofstd/ofstd.h"

#include <catch2/catch.hpp>

namespace teleread::test {

struct TestScu::Impl {
  uint16_t port;
  std::string calling_ae;
  std::vector<std::string> sop_classes;
  std::vector<std::string> transfer_syntaxes;
  T_ASC_Network* net = nullptr;
  T_ASC_Association* assoc = nullptr;
  DIC_US next_message_id = 1;
};

TestScu::TestScu(uint16_t port, std::string calling_ae, std::vector<std::string> sop_classes,
                 std::vector<std::string> transfer_syntaxes)
    : impl_(new Impl{port, std::move(calling_ae), std::move(sop_classes), std::move(transfer_syntaxes)}) {
  if (impl_->transfer_syntaxes.empty()) {
    impl_->transfer_syntaxes = {UID_LittleEndianExplicitTransferSyntax, UID_LittleEndianImplicitTransferSyntax};
  }
}

TestScu::~TestScu() {
  if (impl_->assoc) {
    ASC_abortAssociation(impl_->assoc);
    ASC_destroyAssociation(&impl_->assoc);
  }
  if (impl_->net) ASC_dropNetwork(&impl_->net);
}

std::string TestScu::Connect() {
  OFCondition cond = ASC_initializeNetwork(NET_REQUESTOR, 0, 30, &impl_->net);
  if (cond.bad()) return cond.text();
  T_ASC_Parameters* params = nullptr;
  ASC_createAssociationParameters(&params, ASC_DEFAULTMAXPDU);
  ASC_setAPTitles(params, impl_->calling_ae.c_str(), "LX_READ", nullptr);
  std::string peer = "127.0.0.1:" + std::to_string(impl_->port);
  ASC_setPresentationAddresses(params, "localhost", peer.c_str());
  std::vector<const char*> syntaxes;
  for (const std::string& ts : impl_->transfer_syntaxes) syntaxes.push_back(ts.c_str());
  T_ASC_PresentationContextID id = 1;
  for (const std::string& sop_class : impl_->sop_classes) {
    ASC_addPresentationContext(params, id, sop_class.c_str(), syntaxes.data(), static_cast<int>(syntaxes.size()));
    id += 2;
  }
  cond = ASC_requestAssociation(impl_->net, params, &impl_->assoc);
  if (cond.bad()) {
    if (impl_->assoc == nullptr) ASC_destroyAssociationParameters(&params);
    return cond.text();
  }
  if (ASC_countAcceptedPresentationContexts(impl_->assoc->params) == 0) return "no presentation context accepted";
  return "";
}

std::vector<int> TestScu::StoreFiles(const std::vector<std::filesystem::path>& files, const std::string& sop_class,
                                     std::string* error_comment) {
  std::vector<int> statuses;
  for (const std::filesystem::path& f : files) {
    DcmFileFormat ff;
    REQUIRE(ff.loadFile(f.c_str()).good());
    statuses.push_back(Store(*ff.getDataset(), sop_class, "", "", error_comment));
  }
  return statuses;
}

int TestScu::Store(DcmDataset& dataset, const std::string& context_sop_class, std::string command_sop_class,
                   std::string command_sop_instance, std::string* error_comment) {
  T_ASC_PresentationContextID pres_id = ASC_findAcceptedPresentationContextID(impl_->assoc, context_sop_class.c_str());
  if (pres_id == 0) return -1;
  OFString value;
  if (command_sop_class.empty() && dataset.findAndGetOFString(DCM_SOPClassUID, value).good()) {
    command_sop_class = value.c_str();
  }
  if (command_sop_instance.empty() && dataset.findAndGetOFString(DCM_SOPInstanceUID, value).good()) {
    command_sop_instance = value.c_str();
  }
  T_DIMSE_C_StoreRQ req{};
  req.MessageID = impl_->next_message_id++;
  OFStandard::strlcpy(req.AffectedSOPClassUID, command_sop_class.c_str(), sizeof req.AffectedSOPClassUID);
  OFStandard::strlcpy(req.AffectedSOPInstanceUID, command_sop_instance.c_str(), sizeof req.AffectedSOPInstanceUID);
  req.DataSetType = DIMSE_DATASET_PRESENT;
  req.Priority = DIMSE_PRIORITY_MEDIUM;
  T_DIMSE_C_StoreRSP rsp{};
  DcmDataset* detail = nullptr;
  OFCondition cond = DIMSE_storeUser(impl_->assoc, pres_id, &req, nullptr, &dataset, nullptr, nullptr, DIMSE_BLOCKING,
                                     0, &rsp, &detail);
  if (detail) {
    const char* comment = nullptr;
    if (error_comment && detail->findAndGetString(DCM_ErrorComment, comment).good() && comment) {
      *error_comment = comment;
    }
    delete detail;
  }
  if (cond.bad()) return -1;
  return rsp.DimseStatus;
}

std::string TestScu::AcceptedTransferSyntax(const std::string& sop_class) const {
  if (!impl_->assoc) return "";
  T_ASC_PresentationContextID id = ASC_findAcceptedPresentationContextID(impl_->assoc, sop_class.c_str());
  if (id == 0) return "";
  T_ASC_PresentationContext pc;
  if (ASC_findAcceptedPresentationContext(impl_->assoc->params, id, &pc).bad()) return "";
  return pc.acceptedTransferSyntax;
}

void TestScu::Release() {
  if (!impl_->assoc) return;
  ASC_releaseAssociation(impl_->assoc);
  ASC_destroyAssociation(&impl_->assoc);
}

}  // namespace teleread::test
