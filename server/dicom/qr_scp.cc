#include "server/dicom/qr_scp.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcostrmf.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcvrpn.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"

#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <set>

#include "common/dicom.h"
#include "common/log.h"
#include "server/dicom/dicom_tls.h"
#include "server/dicom/dimse_status.h"
#include "server/dicom/qr_detail.h"
#include "server/dicom/receive.h"
#include "server/dicom/store_scu.h"
#include "server/store/object_handle.h"

namespace teleread {

const char* const kQueryRetrieveSopClasses[] = {
    UID_FINDPatientRootQueryRetrieveInformationModel, UID_FINDStudyRootQueryRetrieveInformationModel,
    UID_MOVEPatientRootQueryRetrieveInformationModel, UID_MOVEStudyRootQueryRetrieveInformationModel,
    UID_GETPatientRootQueryRetrieveInformationModel,  UID_GETStudyRootQueryRetrieveInformationModel,
};
const int kNumQueryRetrieveSopClasses = 6;

namespace {

bool IsPatientRoot(const char* sop_class) {
  const std::string c = sop_class;
  return c == UID_FINDPatientRootQueryRetrieveInformationModel ||
         c == UID_MOVEPatientRootQueryRetrieveInformationModel || c == UID_GETPatientRootQueryRetrieveInformationModel;
}

}  // namespace

namespace qr_detail {

uint32_t TagOf(const DcmTagKey& k) { return (uint32_t{k.getGroup()} << 16) | k.getElement(); }

std::string Who(const QrEnv& env) {
  return env.caller.ae_title + " (" + (env.caller.member_id.empty() ? "centre" : env.caller.member_id) + ")";
}

ParsedIdentifier Parse(DcmDataset* ids, const char* sop_class, const std::string& member_scope) {
  ParsedIdentifier p;
  p.request.member_scope = member_scope;
  if (ids == nullptr) {
    p.error = "no identifier";
    return p;
  }
  OFString value;
  if (ids->findAndGetOFStringArray(DCM_SpecificCharacterSet, value).good()) p.charset = value.c_str();
  OFString level_text;
  ids->findAndGetOFString(DCM_QueryRetrieveLevel, level_text);
  std::optional<QrLevel> level = ParseQrLevel(level_text.c_str());
  if (!level) {
    p.error = "Query/Retrieve Level '" + std::string(level_text.c_str()) + "' is not PATIENT, STUDY, SERIES or IMAGE";
    return p;
  }
  if (*level == QrLevel::kPatient && !IsPatientRoot(sop_class)) {
    p.error = "the Study Root model has no PATIENT level";
    return p;
  }
  p.request.level = *level;
  for (unsigned long i = 0; i < ids->card(); ++i) {
    DcmElement* e = ids->getElement(i);
    const DcmTagKey key = e->getTag();
    if (key == DCM_SpecificCharacterSet || key == DCM_QueryRetrieveLevel || key.getElement() == 0) continue;
    p.return_keys.push_back(key);
    if (e->ident() == EVR_SQ) continue;  // sequence matching is not supported: return key only
    OFString raw;
    if (e->getOFStringArray(raw).bad()) continue;
    const bool person_name = e->ident() == EVR_PN;
    Result<std::string> text =
        DecodeToUtf8(p.charset, std::string(raw.c_str(), raw.length()), person_name ? "\\^=" : "\\");
    if (!text.ok()) {
      p.error = text.status().message();
      return p;
    }
    p.request.keys.push_back({TagOf(key), text.value()});
  }
  return p;
}

void AddErrorComment(DcmDataset** detail, const std::string& comment) {
  *detail = new DcmDataset;
  dimse::SetErrorComment(**detail, comment);
}

const char* AbstractSyntax(T_ASC_Association* assoc, unsigned char pres_id) {
  static thread_local T_ASC_PresentationContext pc;
  if (ASC_findAcceptedPresentationContext(assoc->params, pres_id, &pc).bad()) return "";
  return pc.abstractSyntax;
}

}  // namespace qr_detail

namespace {

using namespace qr_detail;

struct RetrieveState {
  const QrEnv& env;
  const char* sop_class;
  const char* operation;
  std::vector<RetrieveItem> items;
  size_t next = 0;
  uint64_t completed = 0, failed = 0, warning = 0;  // exact; SubOperationCount() on the wire
  std::vector<std::string> failed_uids;
  bool refused = false;
  std::string last_error;
};

// Parses and selects; on a refusal fills the response and returns false.
template <typename Rsp>
bool SelectInstances(RetrieveState& st, DcmDataset* ids, Rsp* rsp, DcmDataset** detail) {
  ParsedIdentifier parsed = Parse(ids, st.sop_class, st.env.caller.member_id);
  if (parsed.error.empty()) {
    Result<std::vector<RetrieveItem>> items = st.env.engine.Retrieve(parsed.request);
    if (items.ok()) {
      st.items = std::move(items.value());
    } else {
      parsed.error = items.status().message();
    }
  }
  if (!parsed.error.empty()) {
    spdlog::warn("{} from {} refused: {}", st.operation, Who(st.env), parsed.error);
    rsp->DimseStatus = dimse::kIdentifierDoesNotMatch;
    AddErrorComment(detail, parsed.error);
    st.refused = true;
    return false;
  }
  if (st.items.empty()) {
    // Not found and not yours look the same: the caller learns nothing about other members.
    spdlog::warn("{} from {}: nothing the caller may retrieve matches", st.operation, Who(st.env));
    rsp->DimseStatus = dimse::kUnableToProcess;
    AddErrorComment(detail, "no matching objects that this AE title may retrieve");
    st.refused = true;
    return false;
  }
  return true;
}

void RecordResult(RetrieveState& st, const RetrieveItem& item, const StoreResult& r) {
  if (r.status == STATUS_Success) {
    ++st.completed;
  } else if ((r.status & 0xF000) == 0xB000) {
    ++st.warning;
  } else {
    ++st.failed;
    st.failed_uids.push_back(item.sop_instance_uid);
    st.last_error = r.error;
  }
}

template <typename Rsp>
void FinalStatus(RetrieveState& st, Rsp* rsp, DcmDataset** rsp_ids) {
  rsp->NumberOfRemainingSubOperations = 0;
  rsp->NumberOfCompletedSubOperations = SubOperationCount(st.completed);
  rsp->NumberOfFailedSubOperations = SubOperationCount(st.failed);
  rsp->NumberOfWarningSubOperations = SubOperationCount(st.warning);
  if (st.failed == 0 && st.warning == 0) {
    rsp->DimseStatus = dimse::kSuccess;
  } else if (st.completed == 0 && st.warning == 0) {
    rsp->DimseStatus = dimse::kSubOperationsRefused;
  } else {
    rsp->DimseStatus = dimse::kSomeSubOperationsFailed;
  }
  if (!st.failed_uids.empty()) {
    std::string list;
    for (const std::string& uid : st.failed_uids) list += (list.empty() ? "" : "\\") + uid;
    *rsp_ids = new DcmDataset;
    (*rsp_ids)->putAndInsertString(DCM_FailedSOPInstanceUIDList, list.c_str());
  }
  spdlog::info("{} from {}: {} sent, {} failed, {} warnings{}{}", st.operation, Who(st.env), st.completed, st.failed,
               st.warning, st.last_error.empty() ? "" : "; last error: ", st.last_error);
}

template <typename Rsp>
void Counts(const RetrieveState& st, Rsp* rsp) {
  rsp->NumberOfRemainingSubOperations = SubOperationCount(st.items.size() - st.next);
  rsp->NumberOfCompletedSubOperations = SubOperationCount(st.completed);
  rsp->NumberOfFailedSubOperations = SubOperationCount(st.failed);
  rsp->NumberOfWarningSubOperations = SubOperationCount(st.warning);
  rsp->opts = O_MOVE_NUMBEROFREMAININGSUBOPERATIONS | O_MOVE_NUMBEROFCOMPLETEDSUBOPERATIONS |
              O_MOVE_NUMBEROFFAILEDSUBOPERATIONS | O_MOVE_NUMBEROFWARNINGSUBOPERATIONS;
}

struct MoveState : RetrieveState {
  T_DIMSE_C_MoveRQ* request = nullptr;
  std::unique_ptr<StoreScu> scu;
};

void MoveCallback(void* data, OFBool cancelled, T_DIMSE_C_MoveRQ* req, DcmDataset* ids, int response_count,
                  T_DIMSE_C_MoveRSP* rsp, DcmDataset** detail, DcmDataset** rsp_ids) {
  auto& st = *static_cast<MoveState*>(data);
  *rsp_ids = nullptr;
  if (response_count == 1) {
    std::optional<DeliveryTarget> target = st.env.config.MoveDestination(st.env.caller.member_id, req->MoveDestination);
    if (!target) {
      spdlog::warn("C-MOVE from {} refused: destination '{}' unknown or not allowed", Who(st.env),
                   req->MoveDestination);
      rsp->DimseStatus = dimse::kDestinationUnknown;
      AddErrorComment(detail, std::string("move destination '") + req->MoveDestination + "' unknown");
      return;
    }
    if (!SelectInstances(st, ids, rsp, detail)) return;
    spdlog::info("C-MOVE from {}: {} instance(s) to {}", Who(st.env), st.items.size(), req->MoveDestination);
    std::set<std::pair<std::string, std::string>> pairs;
    for (const RetrieveItem& item : st.items) pairs.insert({item.sop_class_uid, item.transfer_syntax_uid});
    st.scu = std::make_unique<StoreScu>(st.env.config.centre.ae_title, *target, st.env.dimse_timeout,
                                        st.env.tls ? st.env.tls->ClientLayer(*target) : nullptr);
    if (Status s = st.scu->Connect({pairs.begin(), pairs.end()}); !s.ok()) {
      spdlog::warn("C-MOVE from {}: {}", Who(st.env), s.ToString());
      st.failed = st.items.size();
      for (const RetrieveItem& item : st.items) st.failed_uids.push_back(item.sop_instance_uid);
      st.last_error = s.message();
      st.next = st.items.size();
      FinalStatus(st, rsp, rsp_ids);
      return;
    }
  }
  if (cancelled && st.next < st.items.size()) {
    Counts(st, rsp);
    rsp->DimseStatus = dimse::kCancel;
    st.scu->Release();
    return;
  }
  if (st.next >= st.items.size()) {
    st.scu->Release();
    FinalStatus(st, rsp, rsp_ids);
    return;
  }
  const RetrieveItem& item = st.items[st.next++];
  // PS3.7 9.3.1.1: a C-MOVE's C-STORE sub-operations name the AE and message that asked for them.
  StoreResult r;
  if (Result<ObjectHandle> object = st.env.store.Open(item.relative_path); !object.ok()) {
    r.error = object.status().message();
  } else {
    r = st.scu->Store(object.value(), item.sop_class_uid, item.sop_instance_uid, item.transfer_syntax_uid,
                      st.env.caller.ae_title, req->MessageID);
  }
  RecordResult(st, item, r);
  if (r.association_lost) {
    // The destination went away: the rest cannot be sent either.
    while (st.next < st.items.size()) RecordResult(st, st.items[st.next++], r);
  }
  Counts(st, rsp);
  rsp->DimseStatus = dimse::kPending;
}

struct GetState : RetrieveState {
  T_ASC_Association* assoc = nullptr;
  uint16_t message_id = 0;
};

void GetCallback(void* data, OFBool cancelled, T_DIMSE_C_GetRQ*, DcmDataset* ids, int response_count,
                 T_DIMSE_C_GetRSP* rsp, DcmDataset** detail, DcmDataset** rsp_ids) {
  auto& st = *static_cast<GetState*>(data);
  *rsp_ids = nullptr;
  if (response_count == 1) {
    if (!SelectInstances(st, ids, rsp, detail)) return;
    spdlog::info("C-GET from {}: {} instance(s)", Who(st.env), st.items.size());
  }
  if (cancelled && st.next < st.items.size()) {
    Counts(st, rsp);
    rsp->DimseStatus = dimse::kCancel;
    return;
  }
  if (st.next >= st.items.size()) {
    FinalStatus(st, rsp, rsp_ids);
    return;
  }
  const RetrieveItem& item = st.items[st.next++];
  StoreResult r;
  uint8_t pres_id = ContextForSending(st.assoc, item.sop_class_uid, item.transfer_syntax_uid, true);
  if (pres_id == 0) {
    r.error = "the caller offered no SCP-role context for this SOP class in " + item.transfer_syntax_uid;
  } else {
    // On the caller's own association no Move Originator is sent: that is for C-MOVE only.
    Result<ObjectHandle> object = st.env.store.Open(item.relative_path);
    if (!object.ok()) {
      r.error = object.status().message();
    } else {
      r = SendStoredObject(st.assoc, pres_id, ++st.message_id, object.value(), item.sop_class_uid,
                           item.sop_instance_uid, "", 0, st.env.dimse_timeout);
    }
  }
  RecordResult(st, item, r);
  if (r.association_lost) {
    while (st.next < st.items.size()) RecordResult(st, st.items[st.next++], r);
  }
  Counts(st, rsp);
  rsp->DimseStatus = dimse::kPending;
}

}  // namespace

uint16_t SubOperationCount(uint64_t count) { return count > 0xFFFF ? uint16_t{0xFFFF} : static_cast<uint16_t>(count); }

namespace qr_detail {

// A bad condition only when the association cannot go on.
OFCondition ReceiveIdentifier(T_ASC_Association* assoc, T_ASC_PresentationContextID pres_id, const char* sop_class,
                              const QrEnv& env, Identifier& ids) {
  // A query's identifier is a few hundred bytes: in memory it costs no file to create, read and
  // remove (some 40 system calls). A larger one goes through a file as before.
  constexpr uint64_t kInMemory = 64 * 1024;
  ReceivedDataSet received;
  OFCondition cond =
      ReceiveDataSet(assoc, pres_id, sop_class, "1.2", env.store, env.dimse_timeout, false, &received, kInMemory);
  if (cond.bad()) return cond;
  if (received.outcome != ReceivedDataSet::Outcome::kReceived) {
    ids.status = dimse::kUnableToProcess;
    ids.error = received.outcome == ReceivedDataSet::Outcome::kCannotCreate
                    ? "cannot write the identifier to the storage root"
                    : "cannot write the identifier: storage full";
    return EC_Normal;
  }
  ids.path = received.path;
  Result<std::unique_ptr<DicomFile>> file = std::unique_ptr<DicomFile>();
  if (ids.path.empty()) {
    file = DicomFile::Parse(received.bytes);
    // InvalidArgument: a deflated data set (or no preamble), which is parsed from a file only.
    if (!file.ok() && file.status().code() == Status::Code::kInvalidArgument) file = std::unique_ptr<DicomFile>();
  }
  if (file.ok() && file.value() == nullptr) {  // deflated, or received into a file
    std::optional<ObjectHandle> memory;
    if (ids.path.empty()) {
      Result<ObjectHandle> m = ObjectHandle::Memory(received.bytes);
      if (!m.ok()) {
        ids.status = dimse::kUnableToProcess;
        ids.error = "cannot hold the identifier: " + m.status().message();
        return EC_Normal;
      }
      memory = std::move(m.value());
    }
    file = DicomFile::Open(memory ? memory->path() : ids.path, 0, true);  // all values loaded
  }
  if (!file.ok()) {
    ids.status = dimse::kIdentifierDoesNotMatch;
    ids.error = "unreadable identifier: " + file.status().message();
    return EC_Normal;
  }
  ids.file = std::move(file.value());
  return EC_Normal;
}

// Who asked for what: the entry every query and retrieve writes to the audit trail.
AuditEntry AuditEntryFor(const QrEnv& env, const char* what, DcmDataset& ids) {
  OFString level;
  ids.findAndGetOFString(DCM_QueryRetrieveLevel, level);
  OFString study;
  ids.findAndGetOFString(DCM_StudyInstanceUID, study);
  const std::string actor = env.caller.member_id.empty() ? env.caller.ae_title : env.caller.member_id;
  return {actor, what, study.c_str(), std::string(level.c_str()) + " from " + env.peer};
}

// The answer to a query or retrieve whose audit entry could not be written (fail closed): its
// status, and the error comment returned (the caller deletes it).
DcmDataset* RefuseUnaudited(const char* what, const QrEnv& env, const Status& why, uint16_t* status) {
  spdlog::error("{} from {} refused: audit entry not written: {}", what, Who(env), why.message());
  *status = dimse::kUnableToProcess;
  DcmDataset* detail = nullptr;
  AddErrorComment(&detail, "the audit trail cannot be written");
  return detail;
}

}  // namespace qr_detail

using namespace qr_detail;

Result<FindRequest> ReadQueryIdentifier(const std::filesystem::path& file, const std::string& sop_class,
                                        const std::string& member_scope) {
  Result<std::unique_ptr<DicomFile>> ids = DicomFile::Open(file, 0, true);
  if (!ids.ok()) return Status::InvalidArgument("unreadable identifier: " + ids.status().message());
  ParsedIdentifier p = Parse(&ids.value()->dataset(), sop_class.c_str(), member_scope);
  if (!p.error.empty()) return Status::InvalidArgument(p.error);
  return p.request;
}

OFCondition ServeMove(T_ASC_Association* assoc, unsigned char pres_id, T_DIMSE_C_MoveRQ& req, const QrEnv& env) {
  MoveState st{{env, AbstractSyntax(assoc, pres_id), "C-MOVE", {}, 0, 0, 0, 0, {}, false, ""}, &req, nullptr};
  return Provide<T_DIMSE_C_MoveRQ, T_DIMSE_C_MoveRSP>(
      assoc, pres_id, req, env, "C-MOVE",
      [&](bool cancelled, DcmDataset* ids, int count, T_DIMSE_C_MoveRSP* rsp, DcmDataset** rsp_ids,
          DcmDataset** detail) { MoveCallback(&st, cancelled, &req, ids, count, rsp, detail, rsp_ids); },
      [&](T_DIMSE_C_MoveRSP* rsp, DcmDataset* rsp_ids, DcmDataset* detail) {
        return DIMSE_sendMoveResponse(assoc, pres_id, &req, rsp, rsp_ids, detail);
      });
}

OFCondition ServeGet(T_ASC_Association* assoc, unsigned char pres_id, T_DIMSE_C_GetRQ& req, const QrEnv& env) {
  GetState st{{env, AbstractSyntax(assoc, pres_id), "C-GET", {}, 0, 0, 0, 0, {}, false, ""}, assoc, 0};
  return Provide<T_DIMSE_C_GetRQ, T_DIMSE_C_GetRSP>(
      assoc, pres_id, req, env, "C-GET",
      [&](bool cancelled, DcmDataset* ids, int count, T_DIMSE_C_GetRSP* rsp, DcmDataset** rsp_ids,
          DcmDataset** detail) { GetCallback(&st, cancelled, &req, ids, count, rsp, detail, rsp_ids); },
      [&](T_DIMSE_C_GetRSP* rsp, DcmDataset* rsp_ids, DcmDataset* detail) {
        return DIMSE_sendGetResponse(assoc, pres_id, &req, rsp, rsp_ids, detail);
      });
}

}  // namespace teleread
