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
  // Values over 4 KiB stay on disk (as DCMTK reads a file it sends): a 1 GB object is never loaded whole.
  Result<std::unique_ptr<DicomFile>> meta = DicomFile::OpenRange(object.path(), ByteRange{base, size}, 4096, true);
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
  const size_t limit = PduBodyLimit(assoc->params->theirMaxPDUReceiveSize);
  if (stored_syntax != pc.acceptedTransferSyntax || limit == 0) {
    // Another native encoding (or a peer taking PDUs too small to write here): DCMTK encodes the
    // parsed object as it does a file's, its large values read from the range as they are sent.
    return SendWithDcmtk(assoc, pres_id, message_id, nullptr, &meta.value()->dataset(), sop_class, sop_instance,
                         originator_ae, originator_message_id, timeout);
  }
  const size_t value_max = DataPduValueMax(limit, kMaxValue);
  std::string pdus;
  AppendMessagePdus(&pdus, limit, pres_id,
                    StoreRequestCommand(sop_class, message_id, sop_instance, originator_ae, originator_message_id),
                    nullptr);
  // Once anything is written, a failure leaves the peer inside a message: the association goes.
  auto lost = [&](const std::string& why) {
    ASC_abortAssociation(assoc);
    result.error = why;
    result.association_lost = true;
    return result;
  };
  if (WriteToPeer(assoc, pdus.data(), pdus.size()).bad()) return lost("connection lost while sending the command");
  // Each PDU one PDV of data.
  std::string buffer(12 + std::min<uint64_t>(value_max, size - layout->data_set), '\0');
  uint64_t at = layout->data_set;
  do {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(value_max, size - at));
    const bool last = at + n == size;
    if (!PreadAll(fd.get(), buffer.data() + 12, n, base + at)) {
      return lost("cannot read " + object.path().string() + " while sending it");
    }
    DataPduHeader(buffer.data(), static_cast<uint32_t>(n), pres_id, last);
    if (WriteToPeer(assoc, buffer.data(), n + 12).bad()) return lost("connection lost while sending the data set");
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
