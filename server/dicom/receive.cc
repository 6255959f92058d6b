#include "server/dicom/receive.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcostrmf.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/ofstd/ofstd.h"

#include <fcntl.h>
#include <unistd.h>

#include <system_error>

namespace teleread {
namespace {

// Starts writing received bytes to disk while the rest of the object is still arriving, so the
// fsync before the acknowledgement only waits for the tail, not for the whole object.
class EarlyWriteback {
 public:
  explicit EarlyWriteback(std::filesystem::path file) : file_(std::move(file)) {}
  ~EarlyWriteback() {
    if (fd_ >= 0) ::close(fd_);
  }
  EarlyWriteback(const EarlyWriteback&) = delete;
  EarlyWriteback& operator=(const EarlyWriteback&) = delete;

  static void Progress(void* self, unsigned long bytes_received) {
    auto* w = static_cast<EarlyWriteback*>(self);
    if (bytes_received < w->next_kick_) return;
    // Opened at the first kick: a small object never needs it (one open and close fewer).
    if (w->fd_ < 0) w->fd_ = ::open(w->file_.c_str(), O_RDONLY | O_CLOEXEC);
    if (w->fd_ >= 0) ::sync_file_range(w->fd_, 0, 0, SYNC_FILE_RANGE_WRITE);
    w->next_kick_ = bytes_received + kKickBytes;
  }

 private:
  static constexpr unsigned long kKickBytes = 128 * 1024;  // about one PDU: the tail left to sync stays short
  std::filesystem::path file_;
  int fd_ = -1;
  unsigned long next_kick_ = kKickBytes;
};

}  // namespace

OFCondition ReceiveDataSet(T_ASC_Association* assoc, unsigned char pres_id, const std::string& sop_class_uid,
                           const std::string& sop_instance_uid, const ObjectStore& store, int timeout_seconds,
                           bool early_writeback, ReceivedDataSet* out) {
  *out = ReceivedDataSet{};
  // Names the SOP class and instance in the file's meta header; the syntax is the context's.
  T_DIMSE_C_StoreRQ meta{};
  OFStandard::strlcpy(meta.AffectedSOPClassUID, sop_class_uid.c_str(), sizeof meta.AffectedSOPClassUID);
  OFStandard::strlcpy(meta.AffectedSOPInstanceUID, sop_instance_uid.c_str(), sizeof meta.AffectedSOPInstanceUID);
  const std::filesystem::path temp = store.NewTempPath();
  DcmOutputFileStream* stream = nullptr;
  if (DIMSE_createFilestream(OFFilename(temp.c_str()), &meta, assoc, pres_id, OFTrue, &stream).bad()) {
    out->outcome = ReceivedDataSet::Outcome::kCannotCreate;
    DIC_UL bytes = 0, pdvs = 0;
    return DIMSE_ignoreDataSet(assoc, DIMSE_NONBLOCKING, timeout_seconds, &bytes, &pdvs);
  }
  T_ASC_PresentationContextID data_pres = pres_id;
  std::unique_ptr<EarlyWriteback> writeback = early_writeback ? std::make_unique<EarlyWriteback>(temp) : nullptr;
  OFCondition cond = DIMSE_receiveDataSetInFile(assoc, DIMSE_NONBLOCKING, timeout_seconds, &data_pres, stream,
                                                writeback ? &EarlyWriteback::Progress : nullptr, writeback.get());
  // DCMTK drains the rest of the data set itself when a write fails, so the association lives on.
  const bool write_failed = cond == DIMSE_OUTOFRESOURCES || stream->status().bad();
  const offile_off_t expected_size = stream->tell();
  delete stream;  // closes the file; a failed final flush shows as a short file below
  if (!write_failed && (cond.bad() || data_pres != pres_id)) {
    ::unlink(temp.c_str());
    return cond.bad() ? cond : DIMSE_BADDATA;
  }
  std::error_code ec;
  if (write_failed || std::filesystem::file_size(temp, ec) != static_cast<uintmax_t>(expected_size) || ec) {
    ::unlink(temp.c_str());
    out->outcome = ReceivedDataSet::Outcome::kWriteFailed;
    return EC_Normal;
  }
  out->path = temp;
  return EC_Normal;
}

}  // namespace teleread
