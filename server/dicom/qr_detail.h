#pragma once
// What qr_scp.cc (C-MOVE, C-GET, identifier parsing) and find_scp.cc (C-FIND) share: the
// identifier received and parsed, the audit entry and its refusal, and DCMTK's provider loop.
// Internal to server/dicom.
#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/dicom.h"
#include "common/log.h"
#include "server/dicom/dimse_status.h"
#include "server/dicom/qr_scp.h"
#include "server/store/audit_log.h"
#include "server/store/query.h"

namespace teleread::qr_detail {

uint32_t TagOf(const DcmTagKey& k);
// The caller as logs name it: AE title and member (no patient data).
std::string Who(const QrEnv& env);

// The identifier as a scoped request; the text is decoded from its Specific Character Set.
struct ParsedIdentifier {
  FindRequest request;
  std::string charset;  // as the caller sent it
  std::vector<DcmTagKey> return_keys;
  std::string error;  // set when the identifier is unusable
};
ParsedIdentifier Parse(DcmDataset* ids, const char* sop_class, const std::string& member_scope);

void AddErrorComment(DcmDataset** detail, const std::string& comment);
const char* AbstractSyntax(T_ASC_Association* assoc, unsigned char pres_id);

// The identifier that follows a C-FIND, C-MOVE or C-GET request, received into a file and read
// like a received object. DCMTK's DIMSE_*Provider would parse it in memory, recursively, before
// we see it: an identifier of sequences nested 10,000 deep overflowed the worker's stack.
struct Identifier {
  std::filesystem::path path;
  std::unique_ptr<DicomFile> file;
  uint16_t status = dimse::kSuccess;  // why `file` is missing
  std::string error;
  Identifier() = default;
  Identifier(const Identifier&) = delete;
  Identifier& operator=(const Identifier&) = delete;
  ~Identifier() {
    file.reset();
    if (!path.empty()) ::unlink(path.c_str());
  }
};

// A bad condition only when the association cannot go on.
OFCondition ReceiveIdentifier(T_ASC_Association* assoc, T_ASC_PresentationContextID pres_id, const char* sop_class,
                              const QrEnv& env, Identifier& ids);
// Who asked for what: the entry every query and retrieve writes to the audit trail.
AuditEntry AuditEntryFor(const QrEnv& env, const char* what, DcmDataset& ids);
// The answer to a query or retrieve whose audit entry could not be written (fail closed): its
// status, and the error comment returned (the caller deletes it).
DcmDataset* RefuseUnaudited(const char* what, const QrEnv& env, const Status& why, uint16_t* status);

// DCMTK's provider loop (dimfind.cc, dimmove.cc, dimget.cc) around an identifier read as above:
// `step` is the operation's callback, `send` its DIMSE_send*Response.
template <typename Request, typename Response, typename Step, typename Send>
OFCondition Provide(T_ASC_Association* assoc, T_ASC_PresentationContextID pres_id, Request& req, const QrEnv& env,
                    const char* what, Step step, Send send) {
  Identifier ids;
  OFCondition cond = ReceiveIdentifier(assoc, pres_id, req.AffectedSOPClassUID, env, ids);
  if (cond.bad()) return cond;
  Response rsp{};
  if (!ids.file) {
    spdlog::warn("{} from {} refused: {}", what, Who(env), ids.error);
    rsp.DimseStatus = ids.status;
    DcmDataset* detail = nullptr;
    AddErrorComment(&detail, ids.error);
    cond = send(&rsp, nullptr, detail);
    delete detail;
    return cond;
  }
  // What leaves over DICOM is audited like what leaves over HTTPS, and never unaudited.
  if (env.audit) {
    if (Status a = env.audit->Append(AuditEntryFor(env, what, ids.file->dataset())); !a.ok()) {
      DcmDataset* detail = RefuseUnaudited(what, env, a, &rsp.DimseStatus);
      cond = send(&rsp, nullptr, detail);
      delete detail;
      return cond;
    }
  }
  rsp.DimseStatus = dimse::kPending;
  for (int count = 1; cond.good() && DICOM_PENDING_STATUS(rsp.DimseStatus); ++count) {
    cond = DIMSE_checkForCancelRQ(assoc, pres_id, req.MessageID);
    const bool cancelled = cond.good();
    if (!cancelled && cond != DIMSE_NODATAAVAILABLE) return cond;
    DcmDataset* rsp_ids = nullptr;
    DcmDataset* detail = nullptr;
    step(cancelled, &ids.file->dataset(), count, &rsp, &rsp_ids, &detail);
    cond = send(&rsp, rsp_ids, detail);
    delete rsp_ids;
    delete detail;
  }
  return cond;
}

}  // namespace teleread::qr_detail
