#include "common/dicom_scan.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcuid.h"

#include <algorithm>
#include <cctype>
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

}  // namespace

// Walks the data set's elements from `pos` to `size` without recursion, values skipped, never
// moving backwards (so that `read_at` may be a stream). With `check_lengths`, an element whose
// defined length runs past `size` is Corruption.
Status ScanElements(const ReadAt& read_at, uint64_t pos, uint64_t size, bool explicit_vr, bool big_endian,
                    bool check_lengths) {
  unsigned char b[8];
  auto read = [&](size_t n) {
    const bool ok = read_at(pos, b, n);
    pos += n;
    return ok;
  };
  constexpr uint64_t kUndefined = UINT64_MAX;
  std::vector<uint64_t> open;  // end offsets of the sequences and items we are in
  // Per open entry: encapsulated pixel data, whose items are fragments of bytes, not elements.
  // Only length checks skip them: the file-path scan keeps its old reading.
  std::vector<bool> fragments;
  auto enter = [&](uint32_t len, bool pixel_items = false) {
    open.push_back(len == 0xFFFFFFFFu ? kUndefined : pos + len);
    fragments.push_back(pixel_items && check_lengths);
    return open.size() <= 2 * static_cast<size_t>(kMaxSequenceDepth);  // a sequence and its item per level
  };
  auto leave = [&] {
    open.pop_back();
    fragments.pop_back();
  };
  while (pos + 8 <= size) {
    while (!open.empty() && open.back() != kUndefined && pos >= open.back()) leave();
    if (!read(4)) break;
    const uint32_t group = U16(b, big_endian), element = U16(b + 2, big_endian);
    if (group == 0xFFFE) {  // item and delimiters: always a 4-byte length, little or big endian
      if (!read(4)) break;
      const uint32_t len = U32(b, big_endian);
      if (element == 0xE000 && !fragments.empty() && fragments.back()) {
        if (len != 0xFFFFFFFFu && pos + len > size)
          return Status::Corruption("a pixel data fragment runs past the data set");
        pos += len == 0xFFFFFFFFu ? 0 : len;
      } else if (element == 0xE000) {
        if (!enter(len)) break;
      } else if (!open.empty() && open.back() == kUndefined) {
        leave();
      }
      continue;
    }
    std::string vr;
    uint32_t len = 0;
    if (explicit_vr) {
      if (!read(4)) break;
      vr.assign(reinterpret_cast<char*>(b), 2);
      // As DCMTK reads them: a VR it does not know has a 4-byte length when it is two capital
      // letters (a future VR), else a 2-byte one.
      static const char* kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
      static const char* kShort[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO",
                                     "LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"};
      const bool known_short = std::find(std::begin(kShort), std::end(kShort), vr) != std::end(kShort);
      if (std::find(std::begin(kLong), std::end(kLong), vr) != std::end(kLong) ||
          (!known_short && std::isupper(b[0]) && std::isupper(b[1]))) {
        if (!read(4)) break;
        len = U32(b, big_endian);
      } else {
        len = U16(b + 2, big_endian);
      }
    } else {
      if (!read(4)) break;
      len = U32(b, false);
      vr = DcmTag(DcmTagKey(static_cast<Uint16>(group), static_cast<Uint16>(element))).getEVR() == EVR_SQ ? "SQ" : "";
    }
    // A sequence, or anything of undefined length (UN read as a sequence, encapsulated pixel data).
    if (vr == "SQ" || len == 0xFFFFFFFFu) {
      if (!enter(len, vr == "OB" || vr == "OW" || (group == 0x7FE0 && element == 0x0010))) break;
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
  return Status::Ok();
}

bool DeflatedForDcmtk(const std::filesystem::path& file) {
  DcmFileFormat ff;
  if (ff.loadFile(file.c_str(), EXS_Unknown, EGL_noChange, 0, ERM_metaOnly).bad()) return false;
  OFString syntax;
  (void)ff.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, syntax);
  return syntax == UID_DeflatedExplicitVRLittleEndianTransferSyntax;
}

bool DeflatedForDcmtk(std::string_view part10) {
  DcmFileFormat ff;
  ff.setReadMode(ERM_metaOnly);
  DcmInputBufferStream in;
  in.setBuffer(part10.data(), static_cast<offile_off_t>(part10.size()));
  in.setEos();
  ff.transferInit();
  const OFCondition cond = ff.read(in, EXS_Unknown, EGL_noChange, 0);
  ff.transferEnd();
  if (cond.bad()) return false;
  OFString syntax;
  (void)ff.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, syntax);
  return syntax == UID_DeflatedExplicitVRLittleEndianTransferSyntax;
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
    while (pos + 8 <= size && read(b, 8)) {
      if (U16(b, false) != 0x0002 && (meta_end == 0 || pos - 8 >= meta_end)) break;
      const bool transfer_syntax = U16(b, false) == 0x0002 && U16(b + 2, false) == 0x0010;
      const std::string vr(reinterpret_cast<char*>(b + 4), 2);
      uint64_t len = U16(b + 6, false);
      if (vr == "OB" || vr == "UN" || vr == "UT" || vr == "SQ") {
        if (!read(b, 4)) break;
        len = U32(b, false);
      }
      if (transfer_syntax && len < 256) {
        syntax.resize(len);
        read(syntax.data(), len);
        while (!syntax.empty() && (syntax.back() == '\0' || syntax.back() == ' ')) syntax.pop_back();
      } else {
        pos += len;
      }
    }
    layout.data_set = pos - 8;  // the first element after the meta group
    layout.deflated = syntax == UID_DeflatedExplicitVRLittleEndianTransferSyntax;
    if (!layout.deflated && deflated_for_dcmtk()) {
      return Status::Corruption("the meta header does not say plainly that the data set is deflated");
    }
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
