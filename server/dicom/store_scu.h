#pragma once
// A C-STORE SCU association to a configured peer (C-MOVE destinations now, report delivery
// later). Objects go in their stored transfer syntax; a natively encoded object may also go in
// another native encoding the peer prefers (a lossless re-encoding DCMTK does without codecs).
// Compressed objects are never transcoded: if the peer refuses their syntax, that sub-operation
// fails and says why.
//
// Thread-safety: one StoreScu per thread.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "server/store/object_handle.h"

struct T_ASC_Association;
class DcmDataset;
class DcmTransportLayer;

namespace teleread {

struct StoreResult {
  uint16_t status = 0xFFFF;  // the peer's DIMSE status; 0xFFFF when nothing was answered
  std::string error;         // set when the object could not be sent or was refused
  bool association_lost = false;
};

class StoreScu {
 public:
  // `tls` (from DicomTls::ClientLayer, outliving this) is required when target.tls is set.
  StoreScu(std::string calling_ae, DeliveryTarget target, int timeout_seconds, DcmTransportLayer* tls = nullptr);
  ~StoreScu();  // releases the association
  StoreScu(const StoreScu&) = delete;
  StoreScu& operator=(const StoreScu&) = delete;

  // Proposes a presentation context for each (SOP class, transfer syntax) pair, and with
  // `with_query` one for Study Root C-FIND too, so that Holds() can ask before sending.
  Status Connect(const std::vector<std::pair<std::string, std::string>>& sop_class_and_syntax, bool with_query = false);
  // Whether the peer already holds this instance, by a C-FIND at IMAGE level. An error when the
  // peer did not accept the C-FIND context or did not answer the query: then nobody knows.
  Result<bool> Holds(const std::string& study_instance_uid, const std::string& series_instance_uid,
                     const std::string& sop_instance_uid);
  // For a C-MOVE sub-operation, `move_originator_ae` and `move_originator_message_id` name the
  // C-MOVE request (PS3.7 9.3.1.1); leave them empty for anything else, such as report delivery.
  StoreResult Store(const std::string& file, const std::string& sop_class_uid, const std::string& sop_instance_uid,
                    const std::string& transfer_syntax_uid, const std::string& move_originator_ae = "",
                    uint16_t move_originator_message_id = 0);
  // The same for a stored object, whichever way it is held (SendStoredObject).
  StoreResult Store(const ObjectHandle& object, const std::string& sop_class_uid, const std::string& sop_instance_uid,
                    const std::string& transfer_syntax_uid, const std::string& move_originator_ae = "",
                    uint16_t move_originator_message_id = 0);
  void Release();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The presentation context on `assoc` for sending an object of this class and stored transfer
// syntax, with the peer as SCP; 0 when there is none. Shared by C-MOVE and C-GET.
uint8_t ContextForSending(T_ASC_Association* assoc, const std::string& sop_class_uid,
                          const std::string& transfer_syntax_uid, bool peer_must_be_scp_by_role);

// C-STORE of one stored file on an open association. An empty `move_originator_ae` sends no Move
// Originator Application Entity Title or Message ID.
StoreResult SendStoredFile(T_ASC_Association* assoc, uint8_t pres_id, uint16_t message_id, const std::string& file,
                           const std::string& sop_class_uid, const std::string& sop_instance_uid,
                           const std::string& move_originator_ae, uint16_t move_originator_message_id,
                           int timeout_seconds);
// As SendStoredFile, from `file` or from `dataset` (DCMTK encodes it in the context's syntax).
StoreResult SendWithDcmtk(T_ASC_Association* assoc, uint8_t pres_id, uint16_t message_id, const char* file,
                          DcmDataset* dataset, const std::string& sop_class_uid, const std::string& sop_instance_uid,
                          const std::string& move_originator_ae, uint16_t move_originator_message_id,
                          int timeout_seconds);
// The peer's C-STORE-RSP status into `result`, with the reason (its Error Comment, else the status) when not Success.
void TakeStoreResponse(uint16_t status, DcmDataset* detail, StoreResult* result);
// C-STORE of a stored object: a whole file or memory file as SendStoredFile sends it; a byte
// range of a segment (range_store.cc) read where it lies, its data set's bytes sent as stored
// when the context's syntax is the stored one, else re-encoded by DCMTK from the parsed object
// (as DCMTK does for a file: native syntaxes only).
StoreResult SendStoredObject(T_ASC_Association* assoc, uint8_t pres_id, uint16_t message_id, const ObjectHandle& object,
                             const std::string& sop_class_uid, const std::string& sop_instance_uid,
                             const std::string& move_originator_ae, uint16_t move_originator_message_id,
                             int timeout_seconds);

}  // namespace teleread
