// SendStoredObject: a C-STORE whose data set is a byte range of a segment file, sent as it lies
// on disk, a PDU at a time (the object is never loaded whole: a 1 GB object costs one buffer).
// The command is written as DCMTK writes a C-STORE-RQ (find_responses.h); the response is read by DCMTK.
#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>
#include <string_view>

#include "common/dicom.h"
#include "common/dicom_scan.h"
#include "server/dicom/find_responses.h"
#include "server/dicom/store_scu.h"

namespace teleread {
namespace {

// A PDU's value at most this long: one read and one write per PDU whatever the peer allows.
constexpr size_t kMaxValue = 256 * 1024;

bool PreadAll(int fd, char* out, size_t n, uint64_t at) {
  for (size_t done = 0; done < n;) {
    const ssize_t r = ::pread(fd, out + done, n - done, static_cast<off_t>(at + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

class Fd {
 public:
  explicit Fd(const std::filesystem::path& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

StoreResult SendStoredObject(T_ASC_Association* assoc, uint8_t pres_id, uint16_t message_id, const ObjectHandle& object,
                             const std::string& sop_class, const std::string& sop_instance,
                             const std::string& originator_ae, uint16_t originator_message_id, int timeout) {
  if (!object.ranged()) {
    return SendStoredFile(assoc, pres_id, message_id, object.path().string(), sop_class, sop_instance, originator_ae,
                          originator_message_id, timeout);
  }
  StoreResult result;
  Fd fd(object.path());
  if (fd.get() < 0) {
    result.error = "cannot open " + object.path().string();
    return result;
  }
  const uint64_t base = object.offset(), size = object.length();
  const dicom_scan::ReadAt read_at = [&](uint64_t at, void* buf, size_t n) {
    return at <= size && n <= size - at && PreadAll(fd.get(), static_cast<char*>(buf), n, base + at);
  };
  Result<dicom_scan::Layout> layout = dicom_scan::ReadLayout(size, read_at, [] { return false; });
  Result<std::unique_ptr<DicomFile>> meta = DicomFile::OpenRange(object.path(), ByteRange{base, size}, 1024, true);
  if (!layout.ok() || !meta.ok()) {
    result.error = "unreadable stored object: " + (layout.ok() ? meta.status() : layout.status()).message();
    return result;
  }
  OFString stored_syntax;
  meta.value()->format().getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, stored_syntax);
  T_ASC_PresentationContext pc;
  if (ASC_findAcceptedPresentationContext(assoc->params, pres_id, &pc).bad()) {
    result.error = "no accepted presentation context " + std::to_string(pres_id);
    return result;
  }
  if (stored_syntax != pc.acceptedTransferSyntax) {
    // Another native encoding: DCMTK re-encodes the parsed object, as it does from a file.
    Result<std::unique_ptr<DicomFile>> whole = DicomFile::OpenRange(object.path(), ByteRange{base, size}, 0, true);
    if (!whole.ok()) {
      result.error = "unreadable stored object: " + whole.status().message();
      return result;
    }
    return SendWithDcmtk(assoc, pres_id, message_id, nullptr, &whole.value()->dataset(), sop_class, sop_instance,
                         originator_ae, originator_message_id, timeout);
  }

  const size_t limit = PduBodyLimit(assoc->params->theirMaxPDUReceiveSize);
  const size_t value_max = std::min(kMaxValue, limit == 0 ? kMaxValue : limit - 6);
  std::string pdus;
  AppendMessagePdus(&pdus, limit == 0 ? kMaxValue + 6 : limit, pres_id,
                    StoreRequestCommand(sop_class, message_id, sop_instance, originator_ae, originator_message_id),
                    nullptr);
  if (WriteToPeer(assoc, pdus.data(), pdus.size()).bad()) {
    result.error = "connection lost while sending the command";
    result.association_lost = true;
    return result;
  }
  // Each PDU one PDV of data.
  std::string buffer(12 + std::min<uint64_t>(value_max, size - layout->data_set), '\0');
  uint64_t at = layout->data_set;
  do {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(value_max, size - at));
    const bool last = at + n == size;
    if (!PreadAll(fd.get(), buffer.data() + 12, n, base + at)) {
      // Half a data set cannot be taken back: the association goes.
      ASC_abortAssociation(assoc);
      result.error = "cannot read " + object.path().string() + " while sending it";
      result.association_lost = true;
      return result;
    }
    DataPduHeader(buffer.data(), static_cast<uint32_t>(n), pres_id, last);
    if (WriteToPeer(assoc, buffer.data(), n + 12).bad()) {
      result.error = "connection lost while sending the data set";
      result.association_lost = true;
      return result;
    }
    at += n;
  } while (at < size);

  T_DIMSE_Message rsp{};
  T_ASC_PresentationContextID rsp_pres = 0;
  DcmDataset* detail = nullptr;
  OFCondition cond = DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING, timeout, &rsp_pres, &rsp, &detail);
  if (cond.bad()) {
    result.error = cond.text();
    result.association_lost = true;
  } else if (rsp.CommandField != DIMSE_C_STORE_RSP || rsp.msg.CStoreRSP.MessageIDBeingRespondedTo != message_id) {
    result.error = "the peer answered with another message";
    result.association_lost = true;
  } else {
    TakeStoreResponse(rsp.msg.CStoreRSP.DimseStatus, detail, &result);
  }
  delete detail;
  return result;
}

}  // namespace teleread
