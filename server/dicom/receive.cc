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
#include <optional>
#include <string_view>
#include <utility>

#include "common/log.h"
#include "server/store/direct_file.h"
#include "server/store/segment_trailer.h"

namespace teleread {
namespace {

// A native, uncompressed transfer syntax. An encapsulated (or deflated) object's parse reads a
// header per fragment all through the file: such objects stay in the page cache for it.
bool Native(const char* transfer_syntax) {
  const DcmXfer xfer(transfer_syntax);
  // Unknown to DCMTK (a syntax added to the accepted list later): not assumed native.
  return xfer.getXfer() != EXS_Unknown && xfer.isNotEncapsulated() && xfer.getStreamCompression() == ESC_none;
}

// A deflated data set is parsed from a file of its own (it is inflated first): never in a segment.
bool Deflated(const char* transfer_syntax) { return DcmXfer(transfer_syntax).getStreamCompression() != ESC_none; }

// Holds an object in memory while it fits within `limit` bytes; past that, creates the temp file,
// writes what it held and streams the rest there. `durable` (an object whose fsync comes next):
// its writeback started while the rest is still arriving, so that the fsync before the
// acknowledgement only waits for the tail; `direct_syntax` (null: never), the accepted transfer
// syntax: if it is native, the file is written past its head with O_DIRECT
// (server/store/direct_file.h), where the kicks only start the head's writeback. Looked at only
// when the object spills: most objects stay in memory.
class TieredConsumer : public DcmConsumer {
 public:
  TieredConsumer(const ObjectStore& store, uint64_t limit, bool durable, const char* direct_syntax,
                 SegmentPool::Lease* lease)
      : store_(store), limit_(limit), durable_(durable), direct_syntax_(direct_syntax), lease_(lease) {}
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
    if (!file_) {
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
    if (!file_->Fits(n) && !MoveToFile()) return Discard(len);
    if (file_->Append(p, n) != 0) return Discard(len);
    if (segment_) hasher_->Update(p, n);
    // Kept with O_DIRECT: the head, and every byte where the file system accepts the flag but
    // still writes through the page cache (tmpfs since Linux 6.6), then go out early too.
    if (durable_ && file_->size() >= next_kick_) {
      ::sync_file_range(file_->fd(), static_cast<off64_t>(start_), 0, SYNC_FILE_RANGE_WRITE);
      next_kick_ = file_->size() + kKickBytes;
    }
    return len;
  }

  bool in_memory() const { return !file_ && !failed_; }
  bool in_segment() const { return segment_ != nullptr; }
  // Writes the rest and its trailer and makes the object durable in its segment: its index path.
  // `synced`: by its own fdatasync (else the index commit's sync makes it durable), which `sync`
  // is given running rather than waited for.
  Result<std::string> TakeSegmentObject(bool* synced, std::unique_ptr<PendingSync>* sync) {
    Segment& segment = *std::exchange(segment_, nullptr);
    const uint64_t size = file_->size();
    const std::string trailer = EncodeSegmentTrailer({start_, size, hasher_->Digest()}, lease_->trailer_key());
    // Its slot is not used again, whatever happens: no stale trailer is left past a later object.
    const uint64_t slot = SegmentSlotEnd(start_, size, SegmentPool::kAlign) - start_;
    segment.next = start_ + slot;
    if (trailer.empty()) {  // unsealed, recovery would not find it: refused, its writes waited for
      (void)file_->Finish();
      return Status::IOError("cannot seal the trailer of an object in segment " + segment.name);
    }
    if (int err = file_->Finish(trailer); err != 0) return Status::FromErrno(err, "write segment " + segment.name);
    // Every byte on the device already (O_DIRECT, padded): the index commit's sync covers them.
    const bool on_device = file_->direct_bytes() >= slot;
    *synced = !(segment.durable_with_index && on_device);
    if (*synced) {
      *sync = std::make_unique<PendingSync>(segment.fd);
      // One that ran at once failed here; a running one is waited for before the row (Ingest).
      if (int err = (*sync)->started_async() ? 0 : (*sync)->Wait(); err != 0) {
        return Status::FromErrno(err, "fdatasync segment " + segment.name);
      }
    }
    return ObjectStore::InSegmentPathFor(segment.name, start_, size);
  }
  bool failed() const { return failed_; }
  std::string TakeBytes() { return std::move(held_); }
  // A spilled object's first bytes, as written to its file: the parse reads them from here.
  std::string TakeHead() { return std::move(head_); }
  // Writes the rest, closes the file and hands it over: the caller removes it from now on.
  Result<std::filesystem::path> TakeFile() {
    if (int err = file_->Finish(); err != 0) return Status::FromErrno(err, "write " + temp_.string());
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
    std::string held = std::move(held_);
    held_ = std::string();
    // The parse reads the head from memory; with a very small one (a memory limit of a few KiB)
    // its file's head stays in the page cache for it, as the parse reads on past it.
    const size_t cached_head = held.size() >= kHeadInMemory ? 0 : DirectFile::kHead;
    const bool direct = direct_syntax_ && Native(direct_syntax_);
    Segment* segment = lease_ && durable_ ? lease_->Get() : nullptr;
    // The object's bytes and its trailer (segment_trailer.h).
    const uint64_t needed = held.size() + kSegmentTrailerBytes;
    if (segment && segment->capacity - segment->next < needed) {
      lease_->Retire();  // too full for any object that gets here: the next one
      segment = lease_->Get();
    }
    if (segment && segment->capacity - segment->next >= needed) {
      segment_ = segment;
      start_ = segment->next;
      file_.emplace();
      if (file_->Begin(segment->fd, start_, segment->capacity - start_ - kSegmentTrailerBytes, direct, cached_head,
                       segment->in_place) != 0) {
        failed_ = true;
        return false;
      }
      if (!hasher_) hasher_.emplace();
      hasher_->Update(held.data(), held.size());
    } else if (!CreateFile(direct, cached_head)) {
      return false;
    }
    if (file_->Append(held.data(), held.size()) != 0) {
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

  bool CreateFile(bool direct, size_t cached_head) {
    temp_ = store_.NewTempPath();
    file_.emplace();
    if (file_->Create(temp_, direct, cached_head) != 0) {
      temp_.clear();
      failed_ = true;
      return false;
    }
    return true;
  }

  // The object outgrew its segment's room: what it wrote there is copied to a file of its own,
  // where the rest goes. Its space is used again when it was the segment's first object; else
  // the segment is retired (the next object takes another one).
  bool MoveToFile() {
    Segment& segment = *std::exchange(segment_, nullptr);
    const uint64_t size = file_->size();
    const bool direct = file_->direct();
    if (file_->Finish() != 0) return false;
    const std::filesystem::path segment_path = lease_->dir() / segment.name;
    const uint64_t from = std::exchange(start_, 0);
    // Retired once copied: a pre-written segment is cut where this object begins.
    struct RetireAfter {
      SegmentPool::Lease* lease;
      bool retire;
      ~RetireAfter() {
        if (retire) lease->Retire();
      }
    } retire_after{lease_, from > 0};
    if (!CreateFile(direct, 0)) return false;
    const int in = ::open(segment_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) return false;
    std::string chunk(DirectFile::kChunk, '\0');
    bool ok = true;
    for (uint64_t at = 0; ok && at < size;) {
      const ssize_t n =
          ::pread(in, chunk.data(), std::min<uint64_t>(chunk.size(), size - at), static_cast<off_t>(from + at));
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0 && file_->Append(chunk.data(), static_cast<size_t>(n)) == 0;
      at += ok ? static_cast<uint64_t>(n) : 0;
    }
    // Read once: not kept in the page cache, where the direct writes kept nothing either.
    ::posix_fadvise(in, static_cast<off_t>(from), 0, POSIX_FADV_DONTNEED);
    ::close(in);
    if (!ok) failed_ = true;
    return ok;
  }

  const ObjectStore& store_;
  const uint64_t limit_;
  const bool durable_;
  const char* const direct_syntax_;
  SegmentPool::Lease* const lease_;
  std::string held_;
  std::string head_;
  std::filesystem::path temp_;
  Segment* segment_ = nullptr;  // written into, from start_
  uint64_t start_ = 0;
  std::optional<DirectFile> file_;
  std::optional<ObjectHasher> hasher_;  // of a segment object's bytes, for its trailer
  bool failed_ = false;
  uint64_t next_kick_ = kKickBytes;
};

// DcmOutputStream takes its consumer by pointer at construction: the holder comes first.
struct ConsumerHolder {
  ConsumerHolder(const ObjectStore& store, uint64_t limit, bool durable, const char* direct_syntax,
                 SegmentPool::Lease* lease)
      : consumer(store, limit, durable, direct_syntax, lease) {}
  TieredConsumer consumer;
};
class TieredStream : private ConsumerHolder, public DcmOutputStream {
 public:
  TieredStream(const ObjectStore& store, uint64_t limit, bool durable, const char* direct_syntax,
               SegmentPool::Lease* lease)
      : ConsumerHolder(store, limit, durable, direct_syntax, lease), DcmOutputStream(&consumer) {}
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
                           bool durable, ReceivedDataSet* out, uint64_t memory_limit, SegmentPool::Lease* lease) {
  *out = ReceivedDataSet{};
  // Once per object: its accepted syntax goes in the meta header and decides how a spilled file is written.
  T_ASC_PresentationContext pc;
  const bool known = ASC_findAcceptedPresentationContext(assoc->params, pres_id, &pc).good();
  TieredStream stream(store, memory_limit, durable,
                      known && durable && store.direct_io() ? pc.acceptedTransferSyntax : nullptr,
                      known && durable && !Deflated(pc.acceptedTransferSyntax) ? lease : nullptr);
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
  if (tier.in_segment()) {
    Result<std::string> object = tier.TakeSegmentObject(&out->segment_synced, &out->segment_sync);
    if (!object.ok()) {
      spdlog::error("C-STORE: {}", object.status().ToString());
      out->outcome = ReceivedDataSet::Outcome::kWriteFailed;
      return EC_Normal;
    }
    out->segment_object = std::move(object.value());
    out->head = tier.TakeHead();
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
