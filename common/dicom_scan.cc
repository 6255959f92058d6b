#include "common/dicom_scan.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcistrmf.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcvr.h"
#include "dcmtk/dcmdata/dcxfer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "common/dicom.h"

namespace teleread::dicom_scan {
namespace {

uint32_t U16(const unsigned char* p, bool be) { return be ? uint32_t(p[0] << 8 | p[1]) : uint32_t(p[1] << 8 | p[0]); }
uint32_t U32(const unsigned char* p, bool be) {
  return be ? uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]
            : uint32_t(p[3]) << 24 | uint32_t(p[2]) << 16 | uint32_t(p[1]) << 8 | p[0];
}

// As DCMTK 3.6.7 reads an explicit VR (checked with dcmdump): the known long ones, three of its
// internal names, and a VR it does not know when it is two capital letters (a future VR), have
// a 4-byte length; the rest a 2-byte one.
bool LongLength(const unsigned char* vr) {
  // Asked for every element of every received object: two bytes compared, no string built.
  static constexpr char kLong[][2] = {{'O', 'B'}, {'O', 'D'}, {'O', 'F'}, {'O', 'L'}, {'O', 'V'}, {'O', 'W'},
                                      {'S', 'Q'}, {'S', 'V'}, {'U', 'C'}, {'U', 'N'}, {'U', 'R'}, {'U', 'T'},
                                      {'U', 'V'}, {'o', 'x'}, {'p', 'x'}, {'l', 't'}};
  static constexpr char kShort[][2] = {{'A', 'E'}, {'A', 'S'}, {'A', 'T'}, {'C', 'S'}, {'D', 'A'}, {'D', 'S'},
                                       {'D', 'T'}, {'F', 'D'}, {'F', 'L'}, {'I', 'S'}, {'L', 'O'}, {'L', 'T'},
                                       {'P', 'N'}, {'S', 'H'}, {'S', 'L'}, {'S', 'S'}, {'S', 'T'}, {'T', 'M'},
                                       {'U', 'I'}, {'U', 'L'}, {'U', 'S'}};
  const auto is = [vr](const char* v) {
    return vr[0] == static_cast<unsigned char>(v[0]) && vr[1] == static_cast<unsigned char>(v[1]);
  };
  if (std::any_of(std::begin(kLong), std::end(kLong), is)) return true;
  if (std::any_of(std::begin(kShort), std::end(kShort), is)) return false;
  return std::isupper(vr[0]) && std::isupper(vr[1]);
}

// DcmInputBufferStream has no factory, so DCMTK cannot leave a value unread: it allocates what
// every element claims (new Uint8[len]) before reading. With a factory and maxReadLength = the
// object's size, no honest value is deferred, and a claim past the end goes through DCMTK's
// skip, which comes up short and refuses the object (EC_StreamNotifyClient) as on a file.
class SpentStreamFactory : public DcmInputStreamFactory {
 public:
  // Nothing is ever deferred from an honest object: a deferred value's load finds end of stream.
  DcmInputStream* create() const override {
    auto* in = new DcmInputBufferStream();
    in->setEos();
    return in;
  }
  DcmInputStreamFactory* clone() const override { return new SpentStreamFactory(); }
  DcmInputStreamFactoryType ident() const override { return DFT_DcmInputFileStreamFactory; }
};

class InPlaceStream : public DcmInputStream {
 public:
  explicit InPlaceStream(std::string_view bytes) : DcmInputStream(&producer_) {
    producer_.setBuffer(bytes.data(), static_cast<offile_off_t>(bytes.size()));
    producer_.setEos();
  }
  ~InPlaceStream() override { producer_.releaseBuffer(); }
  DcmInputStreamFactory* newFactory() const override { return new SpentStreamFactory(); }
  // DCMTK asks for this when the meta header says deflated: refused, so that it never inflates
  // bytes that ScanElements walked as plain ones (and never allocates what they claim).
  OFCondition installCompressionFilter(E_StreamCompression) override {
    inflate_refused_ = true;
    return EC_UnsupportedEncoding;
  }
  bool inflate_refused() const { return inflate_refused_; }

 private:
  DcmBufferProducer producer_;
  bool inflate_refused_ = false;
};

// A file as DCMTK's loadFile reads it (values left on disk load from it later by name), except
// that it refuses to inflate, as InPlaceStream does.
class NoInflateFileStream : public DcmInputFileStream {
 public:
  explicit NoInflateFileStream(const std::filesystem::path& file) : DcmInputFileStream(file.c_str()) {}
  OFCondition installCompressionFilter(E_StreamCompression) override {
    inflate_refused_ = true;
    return EC_UnsupportedEncoding;
  }
  bool inflate_refused() const { return inflate_refused_; }

 private:
  bool inflate_refused_ = false;
};

// An object's first bytes from memory (the head an association kept while it wrote the object
// with O_DIRECT, which left nothing of it in the page cache), the rest from the file; the object
// is the file, or `length` bytes of it from `base` (a segment's).
class HeadThenFileProducer : public DcmProducer {
 public:
  HeadThenFileProducer(std::string_view head, const std::filesystem::path& file, uint64_t base, uint64_t length)
      : head_(head), fd_(::open(file.c_str(), O_RDONLY | O_CLOEXEC)), base_(base) {
    struct stat st {};
    if (fd_ < 0 || ::fstat(fd_, &st) != 0 || base > static_cast<uint64_t>(st.st_size)) {
      status_ = EC_InvalidStream;
      return;
    }
    size_ = std::min<uint64_t>(static_cast<uint64_t>(st.st_size) - base, length);
    if (head_.size() > size_) head_ = head_.substr(0, size_);
  }
  ~HeadThenFileProducer() override {
    if (fd_ >= 0) ::close(fd_);
  }
  HeadThenFileProducer(const HeadThenFileProducer&) = delete;
  HeadThenFileProducer& operator=(const HeadThenFileProducer&) = delete;

  OFBool good() const override { return status_.good(); }
  OFCondition status() const override { return status_; }
  OFBool eos() override { return pos_ >= size_; }
  offile_off_t avail() override { return status_.good() ? static_cast<offile_off_t>(size_ - pos_) : 0; }
  offile_off_t read(void* buf, offile_off_t buflen) override {
    if (!status_.good() || buflen <= 0) return 0;
    auto* out = static_cast<char*>(buf);
    const uint64_t want = std::min<uint64_t>(static_cast<uint64_t>(buflen), size_ - pos_);
    uint64_t done = 0;
    if (pos_ < head_.size()) {
      done = std::min<uint64_t>(want, head_.size() - pos_);
      std::memcpy(out, head_.data() + pos_, done);
    }
    while (done < want) {
      const ssize_t r = ::pread(fd_, out + done, want - done, static_cast<off_t>(base_ + pos_ + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        status_ = EC_InvalidStream;
        break;
      }
      done += static_cast<uint64_t>(r);
    }
    pos_ += done;
    return static_cast<offile_off_t>(done);
  }
  offile_off_t skip(offile_off_t skiplen) override {
    if (!status_.good() || skiplen <= 0) return 0;
    const uint64_t n = std::min<uint64_t>(static_cast<uint64_t>(skiplen), size_ - pos_);
    pos_ += n;
    return static_cast<offile_off_t>(n);
  }
  void putback(offile_off_t num) override {
    if (num <= 0) return;
    pos_ -= std::min<uint64_t>(static_cast<uint64_t>(num), pos_);
  }

 private:
  std::string_view head_;
  int fd_ = -1;
  uint64_t base_ = 0, size_ = 0, pos_ = 0;
  OFCondition status_ = EC_Normal;
};

// As NoInflateFileStream, the head read from memory; a value left unread loads later from the file.
class HeadFileStream : public DcmInputStream {
 public:
  HeadFileStream(std::string_view head, const std::filesystem::path& file, uint64_t base, uint64_t length)
      : DcmInputStream(&producer_), producer_(head, file, base, length), file_(file), base_(base) {}
  DcmInputStreamFactory* newFactory() const override {
    return new DcmInputFileStreamFactory(file_.c_str(), static_cast<offile_off_t>(base_ + tell()));
  }
  OFCondition installCompressionFilter(E_StreamCompression) override {
    inflate_refused_ = true;
    return EC_UnsupportedEncoding;
  }
  bool inflate_refused() const { return inflate_refused_; }

 private:
  HeadThenFileProducer producer_;
  std::filesystem::path file_;
  uint64_t base_;
  bool inflate_refused_ = false;
};

// As DcmFileFormat::loadFile (DCMTK 3.6.7) reads from its own file stream.
template <typename Stream>
OFCondition ReadStream(DcmFileFormat& ff, Stream& in, Uint32 max_read, E_FileReadMode mode, bool* deflated) {
  OFCondition cond = in.status();
  if (cond.good()) cond = ff.clear();
  if (cond.good()) {
    const E_FileReadMode old_mode = ff.getReadMode();
    ff.setReadMode(mode);
    ff.transferInit();
    cond = ff.read(in, EXS_Unknown, EGL_noChange, max_read);
    ff.transferEnd();
    ff.setReadMode(old_mode);
  }
  if (deflated) *deflated = in.inflate_refused();
  return cond;
}

}  // namespace

// Walks the data set's elements from `pos` to `size` without recursion, values skipped, never
// moving backwards (so that `read_at` may be a stream). With `check_lengths`, an element or
// fragment whose defined length runs past `size` is Corruption.
Status ScanElements(const ReadAt& read_at, uint64_t pos, uint64_t size, bool explicit_vr, bool big_endian,
                    bool check_lengths) {
  unsigned char b[8];
  auto read = [&](size_t n) {
    const bool ok = read_at(pos, b, n);
    pos += n;
    return ok;
  };
  constexpr uint64_t kUndefined = UINT64_MAX;
  // What we are in, as DCMTK reads it: the end offset of a sequence or item, whether its items
  // are pixel fragments (bytes, not elements), and the encoding of its contents (DCMTK reads an
  // undefined-length UN, unknown-VR or non-pixel OB/OW as a sequence in implicit VR little
  // endian, CP-246).
  // `guessed`: a private value this scan walks as a sequence only because it starts with an item
  // (see below), which DCMTK may read as plain bytes. Its contents must then end exactly where
  // its length does, or the scan cannot tell where DCMTK goes on reading (nor check nesting there).
  struct Open {
    uint64_t end;
    bool fragments, explicit_vr, big_endian, guessed;
  };
  std::vector<Open> open;
  size_t guessed_open = 0;
  auto guess_overrun = [&](bool past_only) {
    return guessed_open > 0 && std::any_of(open.begin(), open.end(), [&](const Open& o) {
             return o.guessed && (past_only ? pos > o.end : pos >= o.end);
           });
  };
  const auto guess_broken = [] {
    return Status::Corruption("a private value that starts with an item does not walk as a sequence to its end");
  };
  const bool base_explicit = explicit_vr, base_big = big_endian;
  auto encoding = [&] {
    explicit_vr = open.empty() ? base_explicit : open.back().explicit_vr;
    big_endian = open.empty() ? base_big : open.back().big_endian;
  };
  auto enter = [&](uint32_t len, bool fragments, bool as_implicit, bool guessed = false) {
    open.push_back({len == 0xFFFFFFFFu ? kUndefined : pos + len, fragments, explicit_vr && !as_implicit,
                    big_endian && !as_implicit, guessed});
    guessed_open += guessed ? 1 : 0;
    encoding();
    return open.size() <= 2 * static_cast<size_t>(kMaxSequenceDepth);  // a sequence and its item per level
  };
  auto leave = [&] {
    guessed_open -= open.back().guessed ? 1 : 0;
    open.pop_back();
    encoding();
  };
  while (pos + 8 <= size) {
    while (!open.empty() && open.back().end != kUndefined && pos >= open.back().end) {
      if (open.back().guessed && pos != open.back().end) return guess_broken();
      leave();
    }
    if (guess_overrun(false)) return guess_broken();
    if (!read(4)) break;
    const uint32_t group = U16(b, big_endian), element = U16(b + 2, big_endian);
    // Item and delimiters: no VR, a 4-byte length. Any other element of group FFFE is read as DCMTK
    // reads it, with its VR (none of them is in its dictionary).
    if (group == 0xFFFE && (element == 0xE000 || element == 0xE00D || element == 0xE0DD)) {
      if (!read(4)) break;
      const uint32_t len = U32(b, big_endian);
      if (element == 0xE000 && !open.empty() && open.back().fragments) {
        if (len == 0xFFFFFFFFu || pos + len > size) {
          if (check_lengths) return Status::Corruption("a pixel data fragment runs past the data set");
          break;
        }
        pos += len;
      } else if (element == 0xE000) {
        if (!enter(len, false, false)) break;
      } else if (open.empty()) {
        break;  // outside any sequence a delimiter ends the data set for DCMTK: the rest is not read
      } else if (open.back().end == kUndefined) {
        leave();
      }
      continue;
    }
    std::string vr;
    uint32_t len = 0;
    bool guessed = false;
    if (explicit_vr) {
      if (!read(4)) break;
      vr.assign(reinterpret_cast<char*>(b), 2);
      if (LongLength(b)) {
        if (!read(4)) break;
        len = U32(b, big_endian);
      } else {
        len = U16(b + 2, big_endian);
      }
    } else {
      if (!read(4)) break;
      len = U32(b, big_endian);
      vr = DcmTag(DcmTagKey(static_cast<Uint16>(group), static_cast<Uint16>(element))).getEVR() == EVR_SQ ? "SQ" : "";
      // DCMTK knows a private sequence by its creator (private.dic), which this scan does not
      // track: a private defined-length value that starts with an item is walked as a sequence.
      // (Any other tag is a sequence for DCMTK exactly when the dictionary says so.) One too
      // short to hold the item's header would have DCMTK read that item past the value's end.
      unsigned char first[4];
      if (vr.empty() && (group & 1) != 0 && element >= 0x1000 && len != 0xFFFFFFFFu && len >= 4 &&
          read_at(pos, first, 4) && U16(first, big_endian) == 0xFFFE && U16(first + 2, big_endian) == 0xE000) {
        if (len < 8) return guess_broken();
        vr = "SQ";
        guessed = true;
      }
    }
    const bool pixel_data = group == 0x7FE0 && element == 0x0010;
    if (vr == "SQ") {
      if (!enter(len, false, false, guessed)) break;
    } else if (len == 0xFFFFFFFFu) {
      // Pixel fragments as DCMTK 3.6.7 reads them (checked with dcmdump): (7FE0,0010) in implicit
      // VR or as OB, OW, OX or ox, and any "px". An undefined-length UN or unknown VR is a sequence
      // whose contents DCMTK reads in implicit VR LE (CP-246). Any other VR of undefined length
      // (an OB that is not pixel data, say) is not DICOM, and how DCMTK nests inside it is not
      // what this scan can promise to follow: refused.
      const bool fragments = explicit_vr
                                 ? vr == "px" || (pixel_data && (vr == "OB" || vr == "OW" || vr == "OX" || vr == "ox"))
                                 : pixel_data;
      const bool unknown_vr = explicit_vr && (vr == "UN" || DcmVR(vr.c_str()).getEVR() == EVR_UNKNOWN ||
                                              DcmVR(vr.c_str()).getEVR() == EVR_UNKNOWN2B);
      if (explicit_vr && !fragments && !unknown_vr) {
        const DcmTagKey tag(static_cast<Uint16>(group), static_cast<Uint16>(element));
        return Status::Corruption("element " + std::string(tag.toString().c_str()) + " (" + vr +
                                  ") has an undefined length");
      }
      if (!enter(len, fragments, !fragments && explicit_vr)) break;
    } else if (check_lengths && pos + len > size) {
      const DcmTagKey tag(static_cast<Uint16>(group), static_cast<Uint16>(element));
      return Status::Corruption("element " + std::string(tag.toString().c_str()) + " is longer than the data set");
    } else {
      pos += len;
    }
  }
  if (open.size() > 2 * static_cast<size_t>(kMaxSequenceDepth)) {
    return Status::Corruption("sequences nested deeper than " + std::to_string(kMaxSequenceDepth) + " levels");
  }
  // Walked past a guessed sequence's end at the end of the object: the bytes after it, which
  // DCMTK reads if the value is plain, were never walked.
  if (guess_overrun(true)) return guess_broken();
  return Status::Ok();
}

bool StreamCompressed(const char* syntax) {
  return syntax != nullptr && DcmXfer(syntax).getStreamCompression() != ESC_none;
}

bool DcmtkReadsCompressed(DcmFileFormat& ff) {
  // As DcmFileFormat::lookForXfer (private) picks the syntax it reads the data set in: the first
  // (0002,0010) the search meets, nested items included.
  DcmMetaInfo* meta = ff.getMetaInfo();
  DcmStack stack;
  if (meta == nullptr || meta->isEmpty() || meta->search(DCM_TransferSyntaxUID, stack).bad()) return false;
  auto* element = static_cast<DcmElement*>(stack.top());
  if (element->getTag().getXTag() != DCM_TransferSyntaxUID) return false;
  char* syntax = nullptr;
  (void)element->getString(syntax);
  return StreamCompressed(syntax);
}

bool DeflatedForDcmtk(const std::filesystem::path& file) {
  DcmFileFormat ff;
  if (ff.loadFile(file.c_str(), EXS_Unknown, EGL_noChange, 0, ERM_metaOnly).bad()) return false;
  return DcmtkReadsCompressed(ff);
}

OFCondition ReadInPlace(DcmFileFormat& ff, std::string_view part10, E_FileReadMode mode, bool* deflated) {
  InPlaceStream in(part10);
  ff.setReadMode(mode);
  ff.transferInit();
  // Every honest value is loaded at once; only a claim past the end would be deferred.
  const Uint32 max_read = static_cast<Uint32>(std::min<uint64_t>(part10.size(), 0xFFFFFFFEu));
  const OFCondition cond = ff.read(in, EXS_Unknown, EGL_noChange, max_read);
  ff.transferEnd();
  ff.setReadMode(ERM_autoDetect);
  if (deflated) *deflated = in.inflate_refused();
  return cond;
}

OFCondition ReadFileNoInflate(DcmFileFormat& ff, const std::filesystem::path& file, Uint32 max_read,
                              E_FileReadMode mode, bool* deflated, std::string_view head, uint64_t offset,
                              uint64_t length) {
  // loadFile hands ERM_dataset to DcmDataset::loadFile (no meta header): not done here.
  if (mode == ERM_dataset) return EC_IllegalCall;
  if (!head.empty() || offset != 0 || length != UINT64_MAX) {
    HeadFileStream in(head, file, offset, length);
    return ReadStream(ff, in, max_read, mode, deflated);
  }
  NoInflateFileStream in(file);
  return ReadStream(ff, in, max_read, mode, deflated);
}

Status NotPlainlyDeflated() {
  return Status::Corruption("the meta header does not say plainly that the data set is deflated");
}

Status ScanAndRead(const ReadAt& read_at, const Layout& layout, DcmFileFormat& ff,
                   const std::function<bool()>& deflated_for_dcmtk,
                   const std::function<OFCondition(bool* deflated)>& read) {
  // Every length is checked: where one runs past the end, the scan cannot vouch for the bytes it
  // would skip, which DCMTK may read (a private sequence it knows by its creator).
  if (Status s = ScanElements(read_at, layout.data_set, layout.size, layout.explicit_vr, layout.big_endian, true);
      !s.ok()) {
    return deflated_for_dcmtk() ? NotPlainlyDeflated() : s;
  }
  bool deflated = false;
  const OFCondition cond = read(&deflated);
  if (deflated) return NotPlainlyDeflated();
  if (cond.bad()) return Status::Corruption(std::string("unparseable DICOM data: ") + cond.text());
  // DCMTK asks to inflate only when bytes follow the meta header: with none, its read succeeds.
  if (DcmtkReadsCompressed(ff)) return NotPlainlyDeflated();
  return Status::Ok();
}

bool DeflatedForDcmtk(std::string_view part10) {
  DcmFileFormat ff;
  if (ReadInPlace(ff, part10, ERM_metaOnly).bad()) return false;
  return DcmtkReadsCompressed(ff);
}

ReadAt MemoryReader(std::string_view bytes) {
  return [bytes](uint64_t at, void* buf, size_t n) {
    if (at > bytes.size() || n > bytes.size() - at) return false;
    std::memcpy(buf, bytes.data() + at, n);
    return true;
  };
}

Result<Layout> ReadLayout(uint64_t size, const ReadAt& read_at, const std::function<bool()>& deflated_for_dcmtk) {
  Layout layout;
  layout.size = size;
  uint64_t pos = 128;
  auto read = [&](void* buf, size_t n) {
    const bool ok = read_at(pos, buf, n);
    pos += n;
    return ok;
  };
  unsigned char b[8];
  char magic[4] = {};
  if (size >= 132 && read(magic, 4) && std::string(magic, 4) == "DICM") {
    // The meta group: explicit VR little endian; note the transfer syntax, then skip it. Like
    // DCMTK, read as far as (0002,0000) says even past elements of other groups.
    uint64_t meta_end = 0;
    if (read(b, 8) && U16(b, false) == 0x0002 && U16(b + 2, false) == 0x0000 && U16(b + 6, false) == 4 && read(b, 4)) {
      meta_end = pos + U32(b, false);
    }
    pos = 132;
    std::string syntax;
    bool seen_syntax = false;
    bool past_meta = false;  // stopped on the data set's first element, 8 bytes back
    while (pos + 8 <= size && read(b, 8)) {
      if (U16(b, false) != 0x0002 && (meta_end == 0 || pos - 8 >= meta_end)) {
        past_meta = true;
        break;
      }
      const bool transfer_syntax = U16(b, false) == 0x0002 && U16(b + 2, false) == 0x0010;
      uint64_t len = U16(b + 6, false);
      if (LongLength(b + 4)) {
        if (!read(b, 4)) return Status::Corruption("the meta header is cut short");
        len = U32(b, false);
      }
      // DCMTK loads every meta value: a length past the end is refused before it reads them.
      if (len > size - pos) return Status::Corruption("a meta header element is longer than the object");
      // DCMTK keeps the first of a repeated element: so does this (a first too long to be a UID
      // is passed over, and still first).
      const bool first_syntax = transfer_syntax && !seen_syntax;
      seen_syntax = seen_syntax || transfer_syntax;
      if (first_syntax && len < 256) {
        syntax.resize(len);
        read(syntax.data(), len);
        while (!syntax.empty() && (syntax.back() == '\0' || syntax.back() == ' ')) syntax.pop_back();
      } else {
        pos += len;
      }
    }
    layout.data_set = past_meta ? pos - 8 : pos;  // the first element after the meta group
    if (layout.data_set > size) return Status::Corruption("the meta header runs past the object");
    layout.deflated = StreamCompressed(syntax.c_str());
    if (!layout.deflated && deflated_for_dcmtk()) return NotPlainlyDeflated();
    layout.explicit_vr = syntax != UID_LittleEndianImplicitTransferSyntax;
    layout.big_endian = syntax == UID_BigEndianExplicitTransferSyntax;
  } else {
    // DCMTK also reads a meta group that starts the file without the preamble, and inflates
    // the data set if it says so: that is refused rather than scanned as a bare data set.
    if (deflated_for_dcmtk())
      return Status::Corruption("a deflated data set behind a meta header without its preamble");
    pos = 0;  // a bare data set: explicit when bytes 4..5 look like a VR
    layout.explicit_vr = read(b, 6) && std::isupper(b[4]) && std::isupper(b[5]);
  }
  return layout;
}

}  // namespace teleread::dicom_scan
