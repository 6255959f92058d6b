#include "server/dicom/find_responses.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcostrmb.h"
#include "dcmtk/dcmdata/dctag.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/dul.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

#include "common/dicom.h"
#include "server/dicom/dimse_status.h"

namespace teleread {
namespace {

void U16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v & 0xFF));
  out->push_back(static_cast<char>(v >> 8));
}
void U32(std::string* out, uint32_t v) {
  U16(out, static_cast<uint16_t>(v & 0xFFFF));
  U16(out, static_cast<uint16_t>(v >> 16));
}
void U32BigEndian(char* at, uint32_t v) {
  at[0] = static_cast<char>(v >> 24);
  at[1] = static_cast<char>(v >> 16);
  at[2] = static_cast<char>(v >> 8);
  at[3] = static_cast<char>(v);
}

// Implicit VR Little Endian, as every command set is.
void CommandElement(std::string* out, uint16_t element, std::string_view value) {
  U16(out, 0x0000);
  U16(out, element);
  U32(out, static_cast<uint32_t>(value.size()));
  out->append(value);
}
void CommandUs(std::string* out, uint16_t element, uint16_t value) {
  std::string v;
  U16(&v, value);
  CommandElement(out, element, v);
}

// A value padded to even length (UI with NUL, text with a space).
std::string Even(std::string v, char pad) {
  if (v.size() & 1) v.push_back(pad);
  return v;
}

// A command set: its Command Group Length, then `elements`.
std::string WithGroupLength(const std::string& elements) {
  std::string length, command;
  U32(&length, static_cast<uint32_t>(elements.size()));
  CommandElement(&command, 0x0000, length);
  return command + elements;
}

bool IsTextVr(DcmEVR vr) {
  static constexpr DcmEVR kText[] = {EVR_AE, EVR_AS, EVR_CS, EVR_DA, EVR_DS, EVR_DT, EVR_IS, EVR_LO, EVR_LT,
                                     EVR_PN, EVR_SH, EVR_ST, EVR_TM, EVR_UI, EVR_UC, EVR_UR, EVR_UT};
  return std::find(std::begin(kText), std::end(kText), vr) != std::end(kText);
}

constexpr uint32_t kSpecificCharacterSet = 0x00080005;
constexpr uint32_t kQueryRetrieveLevel = 0x00080052;
constexpr uint32_t kRetrieveAeTitle = 0x00080054;
constexpr uint32_t kInstanceAvailability = 0x00080056;

}  // namespace

std::unique_ptr<IdentifierEncoder> IdentifierEncoder::Create(const std::vector<uint32_t>& keys, bool explicit_vr,
                                                             std::string level, std::string our_ae) {
  auto e = std::unique_ptr<IdentifierEncoder>(new IdentifierEncoder());
  e->explicit_vr_ = explicit_vr;
  e->level_ = std::move(level);
  e->our_ae_ = std::move(our_ae);
  std::vector<uint32_t> tags = keys;
  tags.push_back(kSpecificCharacterSet);
  tags.push_back(kQueryRetrieveLevel);
  std::sort(tags.begin(), tags.end());
  tags.erase(std::unique(tags.begin(), tags.end()), tags.end());
  for (uint32_t tag : tags) {
    const DcmTag dtag(static_cast<Uint16>(tag >> 16), static_cast<Uint16>(tag & 0xFFFF));
    const DcmEVR evr = dtag.getEVR();
    if (!IsTextVr(evr)) return nullptr;
    Key k{};
    k.tag = tag;
    std::memcpy(k.vr, DcmVR(evr).getVRName(), 2);
    k.long_length = evr == EVR_UC || evr == EVR_UR || evr == EVR_UT;
    k.pad = evr == EVR_UI ? '\0' : ' ';
    k.column = -1;
    k.source = tag == kSpecificCharacterSet   ? Source::kCharset
               : tag == kQueryRetrieveLevel   ? Source::kLevel
               : tag == kRetrieveAeTitle      ? Source::kRetrieveAe
               : tag == kInstanceAvailability ? Source::kAvailability
                                              : Source::kRow;
    e->keys_.push_back(k);
  }
  return e;
}

bool IdentifierEncoder::Encode(const FindRow& row, const std::string& charset, std::string* out) {
  if (!columns_known_) {
    // What the index knows wins over the fixed values, as in the DcmDataset path.
    for (Key& k : keys_) {
      if (k.source == Source::kCharset || k.source == Source::kLevel) continue;
      for (size_t i = 0; i < row.size(); ++i) {
        if (row[i].first == k.tag) {
          k.column = static_cast<int>(i);
          k.source = Source::kRow;
          break;
        }
      }
      if (k.column < 0 && k.source == Source::kRow) k.source = Source::kEmpty;
    }
    columns_known_ = true;
  }
  const size_t start = out->size();
  std::string encoded;
  for (const Key& k : keys_) {
    std::string_view value;
    bool text = false;  // a value from the index or ours, in the response's character set
    switch (k.source) {
      case Source::kCharset:
        value = charset;
        break;
      case Source::kLevel:
        value = level_;
        break;
      case Source::kRow:
        value = row[static_cast<size_t>(k.column)].second;
        text = true;
        break;
      case Source::kRetrieveAe:
        value = our_ae_;
        text = true;
        break;
      case Source::kAvailability:
        value = "ONLINE";
        text = true;
        break;
      case Source::kEmpty:
        break;
    }
    if (text && !value.empty()) {
      Result<std::string> e = EncodeFromUtf8(charset, value);
      if (!e.ok()) {
        out->resize(start);
        return false;
      }
      encoded = std::move(e.value());
      value = encoded;
    }
    const size_t padded = value.size() + (value.size() & 1);
    if (!k.long_length && explicit_vr_ && padded > 0xFFFF) {
      out->resize(start);
      return false;
    }
    U16(out, static_cast<uint16_t>(k.tag >> 16));
    U16(out, static_cast<uint16_t>(k.tag & 0xFFFF));
    if (!explicit_vr_) {
      U32(out, static_cast<uint32_t>(padded));
    } else if (k.long_length) {
      out->append(k.vr, 2);
      U16(out, 0);
      U32(out, static_cast<uint32_t>(padded));
    } else {
      out->append(k.vr, 2);
      U16(out, static_cast<uint16_t>(padded));
    }
    out->append(value);
    if (padded != value.size()) out->push_back(k.pad);
  }
  return true;
}

bool EncodeIdentifier(DcmDataset& ds, int xfer, std::string* out) {
  const auto syntax = static_cast<E_TransferSyntax>(xfer);
  const Uint32 length = ds.calcElementLength(syntax, EET_ExplicitLength);
  if (length == DCM_UndefinedLength) return false;
  std::string buf(length, '\0');
  DcmOutputBufferStream stream(buf.data(), length);
  ds.transferInit();
  const OFCondition cond = ds.write(stream, syntax, EET_ExplicitLength, nullptr);
  ds.transferEnd();
  if (cond.bad()) return false;
  void* data = nullptr;
  offile_off_t written = 0;
  stream.flushBuffer(data, written);
  out->append(buf.data(), static_cast<size_t>(written));
  return true;
}

size_t PduBodyLimit(long their_max) {
  if (their_max <= 0) return size_t{1} << 20;  // 0: no limit; ours keeps a write's PDUs apart
  if (their_max < kMinPduBody) return 0;
  return static_cast<size_t>(their_max);  // as given: PS3.8 9.3.1 forbids anything larger
}

std::unique_ptr<FindResponseWriter> FindResponseWriter::ForContext(T_ASC_Association* assoc, unsigned char pres_id,
                                                                   const T_DIMSE_C_FindRQ& req) {
  T_ASC_PresentationContext pc;
  if (ASC_findAcceptedPresentationContext(assoc->params, pres_id, &pc).bad()) return nullptr;
  const std::string ts = pc.acceptedTransferSyntax;
  auto w = std::unique_ptr<FindResponseWriter>(new FindResponseWriter());
  if (ts == UID_LittleEndianExplicitTransferSyntax) {
    w->explicit_vr_ = true;
    w->xfer_ = EXS_LittleEndianExplicit;
  } else if (ts == UID_LittleEndianImplicitTransferSyntax) {
    w->xfer_ = EXS_LittleEndianImplicit;
  } else {
    return nullptr;
  }
  if (DUL_getTransportConnection(assoc->DULassociation) == nullptr) return nullptr;
  w->assoc_ = assoc;
  w->pres_id_ = pres_id;
  w->max_pdu_body_ = PduBodyLimit(assoc->params->theirMaxPDUReceiveSize);
  if (w->max_pdu_body_ == 0) return nullptr;
  w->command_head_ = FindResponseCommandHead(req);
  return w;
}

std::string FindResponseCommandHead(const T_DIMSE_C_FindRQ& req) {
  std::string head;
  CommandElement(&head, 0x0002, Even(req.AffectedSOPClassUID, '\0'));
  CommandUs(&head, 0x0100, DIMSE_C_FIND_RSP);
  CommandUs(&head, 0x0120, req.MessageID);
  return head;
}

std::string StoreRequestCommand(const std::string& sop_class_uid, uint16_t message_id,
                                const std::string& sop_instance_uid, const std::string& move_originator_ae,
                                uint16_t move_originator_message_id) {
  std::string e;
  CommandElement(&e, 0x0002, Even(sop_class_uid, '\0'));
  CommandUs(&e, 0x0100, DIMSE_C_STORE_RQ);
  CommandUs(&e, 0x0110, message_id);
  CommandUs(&e, 0x0700, DIMSE_PRIORITY_MEDIUM);
  CommandUs(&e, 0x0800, DIMSE_DATASET_PRESENT);
  CommandElement(&e, 0x1000, Even(sop_instance_uid, '\0'));
  if (!move_originator_ae.empty()) {
    CommandElement(&e, 0x1030, Even(move_originator_ae, ' '));
    CommandUs(&e, 0x1031, move_originator_message_id);
  }
  return WithGroupLength(e);
}

std::string StoreResponseCommand(const std::string& sop_class_uid, uint16_t message_id,
                                 const std::string& sop_instance_uid, uint16_t status,
                                 const std::string& error_comment) {
  std::string e;
  CommandElement(&e, 0x0002, Even(sop_class_uid, '\0'));
  CommandUs(&e, 0x0100, DIMSE_C_STORE_RSP);
  CommandUs(&e, 0x0120, message_id);
  CommandUs(&e, 0x0800, DIMSE_DATASET_NULL);
  CommandUs(&e, 0x0900, status);
  if (!error_comment.empty()) CommandElement(&e, 0x0902, Even(dimse::ErrorCommentValue(error_comment), ' '));
  CommandElement(&e, 0x1000, Even(sop_instance_uid, '\0'));
  return WithGroupLength(e);
}

OFCondition SendStoreResponse(T_ASC_Association* assoc, unsigned char pres_id, const T_DIMSE_C_StoreRQ& req,
                              uint16_t status, const std::string& error_comment) {
  const size_t limit = PduBodyLimit(assoc->params->theirMaxPDUReceiveSize);
  if (limit == 0 || DUL_getTransportConnection(assoc->DULassociation) == nullptr) {
    T_DIMSE_C_StoreRSP rsp{};
    rsp.MessageIDBeingRespondedTo = req.MessageID;
    rsp.DimseStatus = status;
    rsp.DataSetType = DIMSE_DATASET_NULL;
    OFStandard::strlcpy(rsp.AffectedSOPClassUID, req.AffectedSOPClassUID, sizeof rsp.AffectedSOPClassUID);
    OFStandard::strlcpy(rsp.AffectedSOPInstanceUID, req.AffectedSOPInstanceUID, sizeof rsp.AffectedSOPInstanceUID);
    rsp.opts = O_STORE_AFFECTEDSOPCLASSUID | O_STORE_AFFECTEDSOPINSTANCEUID;
    DcmDataset detail;
    if (!error_comment.empty()) dimse::SetErrorComment(detail, error_comment);
    return DIMSE_sendStoreResponse(assoc, pres_id, &req, &rsp, error_comment.empty() ? nullptr : &detail);
  }
  const std::string command =
      StoreResponseCommand(req.AffectedSOPClassUID, req.MessageID, req.AffectedSOPInstanceUID, status, error_comment);
  std::string pdus;
  AppendMessagePdus(&pdus, limit, pres_id, command, nullptr);
  return WriteToPeer(assoc, pdus.data(), pdus.size());
}

size_t DataPduValueMax(size_t pdu_body_limit, size_t cap) {
  // PS3.8 9.3.1: a PDU's variable part within the peer's maximum; a PDV fragment of even length,
  // as DCMTK writes it (its receivers refuse an odd one).
  return std::min(cap, pdu_body_limit - 6) & ~size_t{1};
}

void DataPduHeader(char* at, uint32_t value_length, unsigned char pres_id, bool last) {
  at[0] = 0x04;
  at[1] = 0x00;
  U32BigEndian(at + 2, value_length + 6);
  U32BigEndian(at + 6, value_length + 2);
  at[10] = static_cast<char>(pres_id);
  at[11] = last ? 0x02 : 0x00;
}

OFCondition WriteToPeer(T_ASC_Association* assoc, char* data, size_t n) {
  DcmTransportConnection* conn = DUL_getTransportConnection(assoc->DULassociation);
  constexpr int kMaxInterrupted = 8;  // retries without progress before giving up
  int interrupted = 0;
  for (size_t done = 0; done < n;) {
    errno = 0;  // a failed SSL_write need not set it: a stale EINTR must not mean "retry"
    const ssize_t w = conn == nullptr ? -1 : conn->write(data + done, n - done);
    if (w < 0 && errno == EINTR && ++interrupted <= kMaxInterrupted) continue;
    if (w <= 0) return DIMSE_SENDFAILED;
    done += static_cast<size_t>(w);
    interrupted = 0;
  }
  return EC_Normal;
}

std::string FindResponseCommand(std::string_view head, uint16_t status, bool identifier) {
  std::string elements(head);
  CommandUs(&elements, 0x0800, identifier ? DIMSE_DATASET_PRESENT : DIMSE_DATASET_NULL);
  CommandUs(&elements, 0x0900, status);
  return WithGroupLength(elements);
}

void FindResponseWriter::Pending(std::string_view identifier) { Message(dimse::kPending, &identifier); }

void FindResponseWriter::Final(uint16_t status) { Message(status, nullptr); }

void FindResponseWriter::Message(uint16_t status, const std::string_view* identifier) {
  const std::string command = FindResponseCommand(command_head_, status, identifier != nullptr);
  AppendMessagePdus(&buffer_, max_pdu_body_, pres_id_, command, identifier);
}

// PS3.8 9.3.5 and E.2: PDV items (length, context, control header: bit 0 command, bit 1 last
// fragment) packed into PDUs whose variable part stays within the peer's maximum.
void AppendMessagePdus(std::string* out, size_t max_pdu_body, unsigned char pres_id, std::string_view command,
                       const std::string_view* identifier) {
  size_t pdu_start = std::string::npos;
  auto close_pdu = [&] {
    if (pdu_start != std::string::npos) {
      U32BigEndian(&(*out)[pdu_start + 2], static_cast<uint32_t>(out->size() - pdu_start - 6));
    }
  };
  auto add = [&](std::string_view bytes, bool is_command) {
    size_t offset = 0;
    do {
      size_t used = pdu_start == std::string::npos ? max_pdu_body : out->size() - pdu_start - 6;
      if (max_pdu_body - used < 8) {  // not even two bytes of value fit: the next PDU
        close_pdu();
        pdu_start = out->size();
        out->append("\x04\x00\x00\x00\x00\x00", 6);
        used = 0;
      }
      size_t n = std::min(bytes.size() - offset, max_pdu_body - used - 6);
      // Every fragment but the last of even length, as DCMTK writes them: its receivers refuse an
      // odd one ("Odd Fragment Length"), which a peer maximum of odd length would otherwise make.
      if (offset + n < bytes.size()) n &= ~size_t{1};
      const bool last = offset + n == bytes.size();
      char head[6];
      U32BigEndian(head, static_cast<uint32_t>(n + 2));
      head[4] = static_cast<char>(pres_id);
      head[5] = static_cast<char>((is_command ? 0x01 : 0x00) | (last ? 0x02 : 0x00));
      out->append(head, 6);
      out->append(bytes.substr(offset, n));
      offset += n;
    } while (offset < bytes.size());
  };
  add(command, true);
  if (identifier) add(*identifier, false);
  close_pdu();
}

OFCondition FindResponseWriter::Flush() {
  const OFCondition written = WriteToPeer(assoc_, buffer_.data(), buffer_.size());
  buffer_.clear();
  return written;
}

}  // namespace teleread
