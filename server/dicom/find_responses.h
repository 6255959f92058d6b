#pragma once
// C-FIND responses as the wire carries them, written in batches. Each response is one
// P-DATA-TF PDU (its command PDV and its identifier PDV; more PDUs only beyond the peer's
// maximum PDU length), and many PDUs go out in one write. DCMTK's DIMSE_sendFindResponse writes
// four times per match (PDU header and body for the command, again for the identifier), each a
// loopback packet and a wakeup of the caller, and builds a DcmDataset per match: most of the
// server's time in a 10,000-match query. The PDUs are those DCMTK would send, packed tighter.
//
// Only Little Endian contexts (implicit or explicit VR) are written here; ForContext says
// which, and the caller keeps DCMTK's path for the others (big endian, deflate).
//
// The C-STORE-RSP to every received object is written here too, whatever its context's transfer
// syntax (a command is always Implicit VR Little Endian): the DcmDataset DCMTK builds, encodes
// and frees for each answer was half of the server's time answering one.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/store/query.h"

struct T_ASC_Association;
struct T_DIMSE_C_FindRQ;
struct T_DIMSE_C_StoreRQ;
class DcmDataset;
class OFCondition;

namespace teleread {

// The response identifier's encoding, fixed for a query: the return keys in tag order with
// their VRs, and where each value comes from. Text VRs only; anything else (a sequence, a
// binary VR, an unknown or private tag) makes Create return null and the caller encodes the
// DcmDataset it builds (EncodeIdentifier).
class IdentifierEncoder {
 public:
  // `keys`: the requested return keys as (group << 16 | element), without Specific Character
  // Set and Query/Retrieve Level, which every response carries.
  static std::unique_ptr<IdentifierEncoder> Create(const std::vector<uint32_t>& keys, bool explicit_vr,
                                                   std::string level, std::string our_ae);
  // The identifier for one match with its text in `charset` (appended to `out`); false when a
  // value is not representable in it or too long for its VR (nothing appended then).
  bool Encode(const FindRow& row, const std::string& charset, std::string* out);

 private:
  enum class Source { kCharset, kLevel, kRow, kRetrieveAe, kAvailability, kEmpty };
  struct Key {
    uint32_t tag;
    char vr[2];
    bool long_length;  // explicit VR with a 4-byte length (UC, UR, UT)
    char pad;          // UI pads with NUL, other text with a space
    Source source;
    int column;  // kRow: index into the row, found on the first row
  };
  bool explicit_vr_ = false;
  bool columns_known_ = false;
  std::string level_, our_ae_;
  std::vector<Key> keys_;
};

// A DcmDataset as an identifier PDV carries it in `xfer` (an E_TransferSyntax).
bool EncodeIdentifier(DcmDataset& ds, int xfer, std::string* out);

// One DIMSE message as P-DATA-TF PDUs appended to `out`: its command, then its identifier if
// any, in PDVs of context `pres_id`, each PDU's variable part at most `max_pdu_body` bytes
// (the peer's Maximum Length Received, at least kMinPduBody).
void AppendMessagePdus(std::string* out, size_t max_pdu_body, unsigned char pres_id, std::string_view command,
                       const std::string_view* identifier);

// A C-FIND-RSP command set (Implicit VR Little Endian, group length first, as DCMTK writes
// it): the elements fixed for a query (affected SOP class, command field, message ID being
// responded to), then one response's.
std::string FindResponseCommandHead(const T_DIMSE_C_FindRQ& req);
std::string FindResponseCommand(std::string_view head, uint16_t status, bool identifier);

// A C-STORE-RQ command set as DCMTK's DIMSE_storeUser writes it (PS3.7 9.3.1.1), medium
// priority, a data set to follow; an empty `move_originator_ae` sends no Move Originator.
std::string StoreRequestCommand(const std::string& sop_class_uid, uint16_t message_id,
                                const std::string& sop_instance_uid, const std::string& move_originator_ae,
                                uint16_t move_originator_message_id);
// A C-STORE-RSP command set as DCMTK's DIMSE_sendStoreResponse writes it (PS3.7 9.3.1.2): the
// affected SOP class and instance, no data set, and an Error Comment (dimse::ErrorCommentValue)
// when `error_comment` is not empty.
std::string StoreResponseCommand(const std::string& sop_class_uid, uint16_t message_id,
                                 const std::string& sop_instance_uid, uint16_t status,
                                 const std::string& error_comment);
// Answers a C-STORE-RQ with one write of the PDU(s) StoreResponseCommand encodes; DCMTK's
// DIMSE_sendStoreResponse (a DcmDataset built and encoded per answer) only for a peer whose
// maximum PDU length is below kMinPduBody, or without a transport connection.
OFCondition SendStoreResponse(T_ASC_Association* assoc, unsigned char pres_id, const T_DIMSE_C_StoreRQ& req,
                              uint16_t status, const std::string& error_comment);
// The longest even PDV value, at most `cap`, in a PDU within `pdu_body_limit` (PduBodyLimit's, not 0).
size_t DataPduValueMax(size_t pdu_body_limit, size_t cap);
// The 12 bytes before a P-DATA-TF PDU's one data PDV of `value_length` bytes (PS3.8 9.3.5, E.2).
void DataPduHeader(char* at, uint32_t value_length, unsigned char pres_id, bool last);
// Writes PDUs made here to the association's connection (TCP or TLS); DIMSE_SENDFAILED when it fails.
OFCondition WriteToPeer(T_ASC_Association* assoc, char* data, size_t n);

// The smallest peer maximum written here: a PDV header (6 bytes) and some value.
constexpr long kMinPduBody = 16;
// The largest PDU variable part for a peer's Maximum Length Received (0: no limit): theirs as
// given, or 0 when below kMinPduBody (then DCMTK writes the responses).
size_t PduBodyLimit(long their_max);

class FindResponseWriter {
 public:
  // Null when the context's transfer syntax is not Little Endian implicit or explicit VR, or
  // the peer's maximum PDU length is below kMinPduBody (DCMTK's path then).
  static std::unique_ptr<FindResponseWriter> ForContext(T_ASC_Association* assoc, unsigned char pres_id,
                                                        const T_DIMSE_C_FindRQ& req);
  bool explicit_vr() const { return explicit_vr_; }
  int transfer_syntax() const { return xfer_; }

  // Buffers a pending response (0xFF00) with this encoded identifier.
  void Pending(std::string_view identifier);
  // Buffers a final response without identifier (success or cancel).
  void Final(uint16_t status);
  size_t buffered() const { return buffer_.size(); }
  // Drops what is buffered (a query refused after its matches were encoded).
  void Discard() { buffer_.clear(); }
  // Writes what is buffered; bad when the connection failed.
  OFCondition Flush();

 private:
  FindResponseWriter() = default;
  void Message(uint16_t status, const std::string_view* identifier);

  T_ASC_Association* assoc_ = nullptr;
  unsigned char pres_id_ = 0;
  bool explicit_vr_ = false;
  int xfer_ = 0;
  size_t max_pdu_body_ = 0;   // the peer's Maximum Length Received
  std::string command_head_;  // the command's elements before the status, group length pending
  std::string buffer_;
};

}  // namespace teleread
