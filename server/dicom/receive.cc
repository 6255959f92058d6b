#include "server/dicom/receive.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcostrma.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/dcmnet/dimse.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string_view>

#include "server/store/direct_file.h"

namespace teleread {
namespace {

// A native, uncompressed transfer syntax. An encapsulated (or deflated) object's parse reads a
// header per fragment all through the file: such objects stay in the page cache for it.
bool Native(const char* transfer_syntax) {
  const DcmXfer xfer(transfer_syntax);
  // Unknown to DCMTK (a syntax added to the accepted list later): not assumed native.
  return xfer.getXfer() != EXS_Unknown && xfer.isNotEncapsulated() && xfer.getStreamCompression() == ESC_none;
}

// Holds an object in memory while it fits within `limit` bytes; past that, creates the temp file,
// writes what it held and streams the rest there. `durable` (an object whose fsync comes next):
// its writeback started while the rest is still arriving, so that the fsync before the
// acknowledgement only waits for the tail; `direct_syntax` (null: never), the accepted transfer
// syntax: if it is native, the file is written past its head with O_DIRECT
// (server/store/direct_file.h), where the kicks only start the head's writeback. Looked at only
// when the object spills: most objects stay in memory.
class TieredConsumer : public DcmConsumer {
 public:
  TieredConsumer(const ObjectStore& store, uint64_t limit, bool durable, const char* direct_syntax)
      : store_(store), limit_(limit), durable_(durable), direct_syntax_(direct_syntax) {}
  ~TieredConsumer() override {
    if (!temp_.empty()) ::unlink(temp_.c_str());
  }
  TieredConsumer(const TieredConsumer&) = delete;
  TieredConsumer& operator=(const TieredConsumer&) = delete;

  // Always good: told of a failed write, DCMTK would drain the rest of the data set waiting for
  // fragments until the DIMSE timeout when the failure came with the last one. The rest is
  // discarded instead, and the caller asks failed() once DCMTK has read it all.
  OFBool good() const override { return OFTrue; }
  OFCondition status() const override { return EC_Normal; }
  OFBool isFlushed() const override { return OFTrue; }
  offile_off_t avail() const override { return 10 * 1024 * 1024; }  // as DcmFileConsumer: "unlimited"
  void flush() override {}

  offile_off_t write(const void* buf, offile_off_t len) override {
    if (len <= 0) return 0;
    if (failed_) return len;  // discarded
    auto n = static_cast<size_t>(len);
    const char* p = static_cast<const char*>(buf);
    if (temp_.empty()) {
      // Held to the limit, so that a spilled object's head is as long as memory allows.
      // Reserved once: append's doubling could otherwise hold up to twice the limit.
      if (held_.capacity() < limit_) held_.reserve(limit_);
      const size_t take = std::min<uint64_t>(n, limit_ - held_.size());
      held_.append(p, take);
      if (take == n) return len;
      if (!Spill()) return Discard(len);
      p += take;
      n -= take;
    }
    if (file_.Append(p, n) != 0) return Discard(len);
    // Kept with O_DIRECT: the head, and every byte where the file system accepts the flag but
    // still writes through the page cache (tmpfs since Linux 6.6), then go out early too.
    if (durable_ && file_.size() >= next_kick_) {
      ::sync_file_range(file_.fd(), 0, 0, SYNC_FILE_RANGE_WRITE);
      next_kick_ = file_.size() + kKickBytes;
    }
    return len;
  }

  bool in_memory() const { return temp_.empty() && !failed_; }
  bool failed() const { return failed_; }
  std::string TakeBytes() { return std::move(held_); }
  // A spilled object's first bytes, as written to its file: the parse reads them from here.
  std::string TakeHead() { return std::move(head_); }
  // Writes the rest, closes the file and hands it over: the caller removes it from now on.
  Result<std::filesystem::path> TakeFile() {
    if (int err = file_.Finish(); err != 0) return Status::FromErrno(err, "write " + temp_.string());
    return std::exchange(temp_, {});
  }

 private:
  static constexpr uint64_t kKickBytes = 128 * 1024;  // about one PDU: the tail left to sync stays short
  // A head this long holds any header but an enhanced multi-frame object's functional groups.
  static constexpr size_t kHeadInMemory = 16 * 1024;
  // The head kept for the parse at most: a larger memory limit holds no more of it past the spill.
  static constexpr size_t kHeadKept = 128 * 1024;

  offile_off_t Discard(offile_off_t len) {
    failed_ = true;
    held_ = std::string();
    head_ = std::string();
    return len;
  }

  bool Spill() {
    temp_ = store_.NewTempPath();
    std::string held = std::move(held_);
    held_ = std::string();
    // The parse reads the head from memory; with a very small one (a memory limit of a few KiB)
    // its file's head stays in the page cache for it, as the parse reads on past it.
    const size_t cached_head = held.size() >= kHeadInMemory ? 0 : DirectFile::kHead;
    if (file_.Create(temp_, direct_syntax_ && Native(direct_syntax_), cached_head) != 0) {
      temp_.clear();
      failed_ = true;
      return false;
    }
    if (file_.Append(held.data(), held.size()) != 0) {
      failed_ = true;
      return false;
    }
    // The parse reads past the kept part from the file.
    if (held.size() > kHeadKept) {
      head_.assign(held, 0, kHeadKept);
    } else {
      head_ = std::move(held);
    }
    return true;
  }

  const ObjectStore& store_;
  const uint64_t limit_;
  const bool durable_;
  const char* const direct_syntax_;
  std::string held_;
  std::string head_;
  std::filesystem::path temp_;
  DirectFile file_;
  bool failed_ = false;
  uint64_t next_kick_ = kKickBytes;
};

// DcmOutputStream takes its consumer by pointer at construction: the holder comes first.
struct ConsumerHolder {
  ConsumerHolder(const ObjectStore& store, uint64_t limit, bool durable, const char* direct_syntax)
      : consumer(store, limit, durable, direct_syntax) {}
  TieredConsumer consumer;
};
class TieredStream : private ConsumerHolder, public DcmOutputStream {
 public:
  TieredStream(const ObjectStore& store, uint64_t limit, bool durable, const char* direct_syntax)
      : ConsumerHolder(store, limit, durable, direct_syntax), DcmOutputStream(&consumer) {}
  TieredConsumer& tier() { return consumer; }
};

// The preamble and file meta header that DIMSE_createFilestream (DCMTK 3.6.7) writes, so that
// an object holds the same bytes in either tier and as before the tiers.
bool WriteMetaHeader(T_ASC_Association* assoc, const char* transfer_syntax, const std::string& sop_class_uid,
                     const std::string& sop_instance_uid, DcmOutputStream& out) {
  DcmMetaInfo meta;
  const Uint8 version[2] = {0, 1};
  bool ok = meta.putAndInsertUint8Array(DCM_FileMetaInformationVersion, version, 2).good() &&
            meta.putAndInsertString(DCM_MediaStorageSOPClassUID, sop_class_uid.c_str()).good() &&
            meta.putAndInsertString(DCM_MediaStorageSOPInstanceUID, sop_instance_uid.c_str()).good() &&
            meta.putAndInsertString(DCM_TransferSyntaxUID, transfer_syntax).good() &&
            meta.putAndInsertString(DCM_ImplementationClassUID, OFFIS_IMPLEMENTATION_CLASS_UID).good() &&
            meta.putAndInsertString(DCM_ImplementationVersionName, OFFIS_DTK_IMPLEMENTATION_VERSION_NAME2).good() &&
            meta.putAndInsertString(DCM_SourceApplicationEntityTitle, assoc->params->DULparams.callingAPTitle).good();
  if (!ok) return false;
  if (meta.computeGroupLengthAndPadding(EGL_withGL, EPD_noChange, META_HEADER_DEFAULT_TRANSFERSYNTAX,
                                        EET_UndefinedLength)
          .bad()) {
    return false;
  }
  meta.transferInit();
  const bool written = meta.write(out, META_HEADER_DEFAULT_TRANSFERSYNTAX, EET_ExplicitLength, nullptr).good();
  meta.transferEnd();
  return written && out.good();
}

}  // namespace

OFCondition ReceiveDataSet(T_ASC_Association* assoc, unsigned char pres_id, const std::string& sop_class_uid,
                           const std::string& sop_instance_uid, const ObjectStore& store, int timeout_seconds,
                           bool durable, ReceivedDataSet* out, uint64_t memory_limit) {
  *out = ReceivedDataSet{};
  // Once per object: its accepted syntax goes in the meta header and decides how a spilled file is written.
  T_ASC_PresentationContext pc;
  const bool known = ASC_findAcceptedPresentationContext(assoc->params, pres_id, &pc).good();
  TieredStream stream(store, memory_limit, durable,
                      known && durable && store.direct_io() ? pc.acceptedTransferSyntax : nullptr);
  if (!known || !WriteMetaHeader(assoc, pc.acceptedTransferSyntax, sop_class_uid, sop_instance_uid, stream) ||
      stream.tier().failed()) {
    out->outcome = ReceivedDataSet::Outcome::kCannotCreate;
    DIC_UL bytes = 0, pdvs = 0;
    return DIMSE_ignoreDataSet(assoc, DIMSE_NONBLOCKING, timeout_seconds, &bytes, &pdvs);
  }
  T_ASC_PresentationContextID data_pres = pres_id;
  OFCondition cond =
      DIMSE_receiveDataSetInFile(assoc, DIMSE_NONBLOCKING, timeout_seconds, &data_pres, &stream, nullptr, nullptr);
  // A failed write discarded the rest of the data set as DCMTK received it: the association lives on.
  const bool write_failed = cond == DIMSE_OUTOFRESOURCES || stream.tier().failed();
  if (!write_failed && (cond.bad() || data_pres != pres_id)) return cond.bad() ? cond : DIMSE_BADDATA;
  if (write_failed) {
    out->outcome = ReceivedDataSet::Outcome::kWriteFailed;
    return EC_Normal;
  }
  TieredConsumer& tier = stream.tier();
  if (tier.in_memory()) {
    out->bytes = tier.TakeBytes();
    return EC_Normal;
  }
  Result<std::filesystem::path> file = tier.TakeFile();
  if (!file.ok()) {  // the temp file went with the error
    out->outcome = ReceivedDataSet::Outcome::kWriteFailed;
    return EC_Normal;
  }
  out->path = std::move(file.value());
  out->head = tier.TakeHead();
  return EC_Normal;
}

}  // namespace teleread
