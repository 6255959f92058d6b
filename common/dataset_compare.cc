#include "common/dataset_compare.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdatset.h"
#include "dcmtk/dcmdata/dcfcache.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcitem.h"
#include "dcmtk/dcmdata/dcsequen.h"

#include <vector>

#include "common/dicom.h"

namespace teleread {
namespace {

constexpr uint32_t kInMemory = 64 * 1024;  // larger values stay in their files
constexpr uint32_t kPiece = 1 << 20;

struct Comparison {
  DcmFileCache cache_a, cache_b;  // each keeps its file open across pieces
  std::vector<char> a = std::vector<char>(kPiece), b = std::vector<char>(kPiece);
  OFCondition error = EC_Normal;
};

bool SameValue(DcmElement& x, DcmElement& y, Comparison& c) {
  const Uint32 length = x.getLength();
  if (length != y.getLength()) return false;
  for (Uint32 offset = 0; offset < length; offset += kPiece) {
    const Uint32 n = std::min(kPiece, length - offset);
    OFCondition ca = x.getPartialValue(c.a.data(), offset, n, &c.cache_a, EBO_LittleEndian);
    OFCondition cb = y.getPartialValue(c.b.data(), offset, n, &c.cache_b, EBO_LittleEndian);
    if (ca.bad() || cb.bad()) {
      c.error = ca.bad() ? ca : cb;
      return false;
    }
    if (!std::equal(c.a.begin(), c.a.begin() + n, c.b.begin())) return false;
  }
  return true;
}

bool SameItem(DcmItem& x, DcmItem& y, Comparison& c);

bool SameElement(DcmElement& x, DcmElement& y, Comparison& c) {
  if (x.getTag() != y.getTag() || x.ident() != y.ident()) return false;
  if (x.ident() != EVR_SQ) return SameValue(x, y, c);
  auto& sx = static_cast<DcmSequenceOfItems&>(x);
  auto& sy = static_cast<DcmSequenceOfItems&>(y);
  if (sx.card() != sy.card()) return false;
  for (unsigned long i = 0; i < sx.card(); ++i) {
    if (!SameItem(*sx.getItem(i), *sy.getItem(i), c)) return false;
  }
  return true;
}

// The elements of an item other than group lengths (gggg,0000), which encodings may or may not carry.
std::vector<DcmElement*> Elements(DcmItem& item) {
  std::vector<DcmElement*> out;
  for (unsigned long i = 0; i < item.card(); ++i) {
    DcmElement* e = item.getElement(i);
    if (e->getTag().getElement() != 0) out.push_back(e);
  }
  return out;
}

bool SameItem(DcmItem& x, DcmItem& y, Comparison& c) {
  const std::vector<DcmElement*> ex = Elements(x), ey = Elements(y);
  if (ex.size() != ey.size()) return false;
  for (size_t i = 0; i < ex.size(); ++i) {
    if (!SameElement(*ex[i], *ey[i], c)) return false;
  }
  return true;
}

}  // namespace

Result<bool> SameElements(const std::filesystem::path& a, const std::filesystem::path& b, const ByteRange* b_range,
                          const ByteRange* a_range) {
  Result<std::unique_ptr<DicomFile>> fa =
      a_range ? DicomFile::OpenRange(a, *a_range, kInMemory, true) : DicomFile::Open(a, kInMemory, true);
  if (!fa.ok()) return fa.status();
  Result<std::unique_ptr<DicomFile>> fb =
      b_range ? DicomFile::OpenRange(b, *b_range, kInMemory, true) : DicomFile::Open(b, kInMemory, true);
  if (!fb.ok()) return fb.status();
  Comparison c;
  const bool same = SameItem(fa.value()->dataset(), fb.value()->dataset(), c);
  if (c.error.bad()) return Status::IOError(std::string("comparing stored objects: ") + c.error.text());
  return same;
}

}  // namespace teleread
