// C-FIND: DCMTK's provider on Big Endian and deflated contexts, else the batched path
// (responses encoded by find_responses.*, many per write).
#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcvrpn.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "common/dicom.h"
#include "common/log.h"
#include "server/dicom/dimse_status.h"
#include "server/dicom/find_responses.h"
#include "server/dicom/qr_detail.h"
#include "server/dicom/qr_scp.h"

namespace teleread {
namespace {

using namespace qr_detail;

// Response identifier: the requested keys, filled from the row where the index knows them.
// Text goes back in the caller's character set when it can hold every value, else UTF-8.
std::unique_ptr<DcmDataset> BuildResponse(const ParsedIdentifier& p, const FindRow& row, const char* level_text,
                                          const std::string& our_ae) {
  auto build = [&](const std::string& charset) -> std::unique_ptr<DcmDataset> {
    auto ds = std::make_unique<DcmDataset>();
    ds->putAndInsertString(DCM_SpecificCharacterSet, charset.c_str());
    ds->putAndInsertString(DCM_QueryRetrieveLevel, level_text);
    for (const DcmTagKey& key : p.return_keys) {
      const uint32_t tag = TagOf(key);
      std::string value;
      bool known = false;
      for (const auto& [t, v] : row) {
        if (t == tag) {
          value = v;
          known = true;
          break;
        }
      }
      if (!known && key == DCM_RetrieveAETitle) value = our_ae, known = true;
      if (!known && key == DCM_InstanceAvailability) value = "ONLINE", known = true;
      if (known && !value.empty()) {
        Result<std::string> encoded = EncodeFromUtf8(charset, value);
        if (!encoded.ok()) return nullptr;
        value = encoded.value();
      }
      DcmTag dtag(key);
      if (dtag.getEVR() == EVR_SQ) {
        ds->insertEmptyElement(key);
      } else {
        ds->putAndInsertString(key, value.c_str());
      }
    }
    return ds;
  };
  const std::string wanted = p.charset.empty() ? "ISO_IR 192" : p.charset;
  if (auto ds = build(wanted)) return ds;
  return build("ISO_IR 192");
}

struct FindState {
  const QrEnv& env;
  const char* sop_class;
  ParsedIdentifier parsed;
  std::unique_ptr<FindCursor> cursor;
  std::string level_text;
  long matches = 0;
  bool failed = false;
};

// A query's first step on either path: the identifier parsed and the cursor opened. On failure
// (logged) `status` and `comment` say how to refuse it.
bool StartFind(FindState& st, DcmDataset& request_ids, uint16_t* status, std::string* comment) {
  st.parsed = Parse(&request_ids, st.sop_class, st.env.caller.member_id);
  OFString level;
  request_ids.findAndGetOFString(DCM_QueryRetrieveLevel, level);
  st.level_text = level.c_str();
  if (!st.parsed.error.empty()) {
    spdlog::warn("C-FIND from {} refused: {}", Who(st.env), st.parsed.error);
    *status = dimse::kIdentifierDoesNotMatch;
    *comment = st.parsed.error;
    return false;
  }
  Result<std::unique_ptr<FindCursor>> cursor = st.env.engine.Find(st.parsed.request);
  if (!cursor.ok()) {
    spdlog::warn("C-FIND from {} failed: {}", Who(st.env), cursor.status().ToString());
    *status = cursor.status().code() == Status::Code::kInvalidArgument ? dimse::kIdentifierDoesNotMatch
                                                                       : dimse::kUnableToProcess;
    *comment = cursor.status().message();
    return false;
  }
  st.cursor = std::move(cursor.value());
  return true;
}

void FindCallback(void* data, OFBool cancelled, T_DIMSE_C_FindRQ*, DcmDataset* request_ids, int response_count,
                  T_DIMSE_C_FindRSP* rsp, DcmDataset** rsp_ids, DcmDataset** detail) {
  auto& st = *static_cast<FindState*>(data);
  *rsp_ids = nullptr;
  if (response_count == 1) {
    std::string comment;
    if (!StartFind(st, *request_ids, &rsp->DimseStatus, &comment)) {
      AddErrorComment(detail, comment);
      st.failed = true;
      return;
    }
  }
  if (cancelled) {
    rsp->DimseStatus = dimse::kCancel;
    return;
  }
  FindRow row;
  Result<bool> next = st.cursor->Next(&row);
  if (!next.ok()) {
    rsp->DimseStatus = dimse::kUnableToProcess;
    AddErrorComment(detail, next.status().message());
    st.failed = true;
    return;
  }
  if (!next.value()) {
    rsp->DimseStatus = dimse::kSuccess;
    return;
  }
  ++st.matches;
  *rsp_ids = BuildResponse(st.parsed, row, st.level_text.c_str(), st.env.config.centre.ae_title).release();
  rsp->DimseStatus = dimse::kPending;
}

// C-MOVE and C-GET: the selected instances and the running counts.

// C-FIND on a Little Endian context: the same steps as FindCallback in Provide's loop, with
// the responses written by FindResponseWriter. The audit entry is handed to the index writer and
// written while the query runs (its commit, an fdatasync, was most of a selective query's time);
// nothing is sent before it is durable. What is buffered goes out, and a
// C-CANCEL is looked for, before the first match, at kFlushBytes, and before a Next() once the
// buffer is kFlushAge old; once one Next() took longer than kFlushAge (a slow scan), before every
// later Next(), so that a match found waits for no other.
OFCondition ServeFindBatched(T_ASC_Association* assoc, unsigned char pres_id, T_DIMSE_C_FindRQ& req, FindState& st,
                             FindResponseWriter& out) {
  constexpr size_t kFlushBytes = 64 * 1024;
  constexpr auto kFlushAge = std::chrono::milliseconds(10);
  const QrEnv& env = st.env;
  // Before anything leaves: the entry durable, else the query refused (and nothing it found sent).
  // On every return the started entry is waited for, and a failure logged though nothing waited.
  struct AuditWait {
    const QrEnv& env;
    std::future<Status> pending;
    Status result = Status::Ok();
    bool Durable() {
      if (pending.valid()) result = pending.get();
      return result.ok();
    }
    ~AuditWait() {
      if (pending.valid() && !Durable()) {
        spdlog::error("C-FIND from {}: audit entry not written: {}", Who(env), result.message());
      }
    }
  } audit{env, {}};
  // A response DCMTK encodes (refusals, errors): after what is buffered, in order.
  auto send_detail = [&](uint16_t status, DcmDataset* detail) {
    st.failed = true;
    OFCondition cond = out.Flush();
    T_DIMSE_C_FindRSP rsp{};
    rsp.DimseStatus = status;
    if (cond.good()) cond = DIMSE_sendFindResponse(assoc, pres_id, &req, &rsp, nullptr, detail);
    delete detail;
    return cond;
  };
  auto send = [&](uint16_t status, const std::string& comment) {
    DcmDataset* detail = nullptr;
    AddErrorComment(&detail, comment);
    return send_detail(status, detail);
  };
  auto unaudited = [&] {
    out.Discard();
    uint16_t status = 0;
    DcmDataset* detail = RefuseUnaudited("C-FIND", env, audit.result, &status);
    return send_detail(status, detail);
  };
  auto fail = [&](uint16_t status, const std::string& comment) {
    return audit.Durable() ? send(status, comment) : unaudited();
  };
  auto flush = [&]() -> OFCondition {
    if (out.buffered() == 0) return EC_Normal;
    return audit.Durable() ? out.Flush() : unaudited();
  };
  Identifier ids;
  OFCondition cond = ReceiveIdentifier(assoc, pres_id, req.AffectedSOPClassUID, env, ids);
  if (cond.bad()) return cond;
  if (!ids.file) {
    spdlog::warn("C-FIND from {} refused: {}", Who(env), ids.error);
    return send(ids.status, ids.error);
  }
  if (env.audit) audit.pending = env.audit->AppendAsync(AuditEntryFor(env, "C-FIND", ids.file->dataset()));
  uint16_t refusal = 0;
  std::string comment;
  if (!StartFind(st, ids.file->dataset(), &refusal, &comment)) return fail(refusal, comment);
  std::vector<uint32_t> keys;
  for (const DcmTagKey& k : st.parsed.return_keys) keys.push_back(TagOf(k));
  std::unique_ptr<IdentifierEncoder> encoder =
      IdentifierEncoder::Create(keys, out.explicit_vr(), st.level_text, env.config.centre.ae_title);
  const std::string wanted = st.parsed.charset.empty() ? "ISO_IR 192" : st.parsed.charset;
  auto last_flush = std::chrono::steady_clock::now();
  bool slow = false;  // a Next() took longer than kFlushAge
  FindRow row;
  std::string identifier;
  for (bool first = true;; first = false) {
    auto now = std::chrono::steady_clock::now();
    if (first || slow || out.buffered() >= kFlushBytes || (out.buffered() > 0 && now - last_flush >= kFlushAge)) {
      if ((cond = flush()).bad() || st.failed) return cond;
      last_flush = now;
      cond = DIMSE_checkForCancelRQ(assoc, pres_id, req.MessageID);
      if (cond.good()) {
        out.Final(dimse::kCancel);
        return flush();
      }
      if (cond != DIMSE_NODATAAVAILABLE) return cond;
      now = std::chrono::steady_clock::now();
    }
    Result<bool> next = st.cursor->Next(&row);
    if (!slow && std::chrono::steady_clock::now() - now > kFlushAge) slow = true;
    if (!next.ok()) return fail(dimse::kUnableToProcess, next.status().message());
    if (!next.value()) {
      out.Final(dimse::kSuccess);
      return flush();
    }
    identifier.clear();
    const bool fast =
        encoder && (encoder->Encode(row, wanted, &identifier) || encoder->Encode(row, "ISO_IR 192", &identifier));
    if (!fast) {
      std::unique_ptr<DcmDataset> ds = BuildResponse(st.parsed, row, st.level_text.c_str(), env.config.centre.ae_title);
      if (!ds || !EncodeIdentifier(*ds, out.transfer_syntax(), &identifier)) {
        return fail(dimse::kUnableToProcess, "cannot encode a match");
      }
    }
    ++st.matches;
    out.Pending(identifier);
  }
}

}  // namespace

OFCondition ServeFind(T_ASC_Association* assoc, unsigned char pres_id, T_DIMSE_C_FindRQ& req, const QrEnv& env) {
  FindState st{env, AbstractSyntax(assoc, pres_id), {}, nullptr, "", 0, false};
  std::unique_ptr<FindResponseWriter> writer = FindResponseWriter::ForContext(assoc, pres_id, req);
  OFCondition cond;
  if (writer) {
    cond = ServeFindBatched(assoc, pres_id, req, st, *writer);
  } else {  // big endian or deflated: DCMTK's provider, a message at a time
    cond = Provide<T_DIMSE_C_FindRQ, T_DIMSE_C_FindRSP>(
        assoc, pres_id, req, env, "C-FIND",
        [&](bool cancelled, DcmDataset* ids, int count, T_DIMSE_C_FindRSP* rsp, DcmDataset** rsp_ids,
            DcmDataset** detail) { FindCallback(&st, cancelled, &req, ids, count, rsp, rsp_ids, detail); },
        [&](T_DIMSE_C_FindRSP* rsp, DcmDataset* rsp_ids, DcmDataset* detail) {
          return DIMSE_sendFindResponse(assoc, pres_id, &req, rsp, rsp_ids, detail);
        });
  }
  if (!st.failed && !st.level_text.empty() && cond.good()) {  // else logged as a refusal or the abort it causes
    spdlog::info("C-FIND {} from {}: {} match(es)", st.level_text, Who(env), st.matches);
  }
  return cond;
}

}  // namespace teleread
