#pragma once
// Element-by-element comparison of two data sets with bounded memory, for SameDataSet
// (common/dicom.h): a 200 MB object re-sent in another encoding costs a few MB, not 2 x 200.
#include <filesystem>

#include "common/dicom.h"
#include "common/status.h"

namespace teleread {

// Whether the data sets in files `a` and `b` (Part 10, any native transfer syntax, deflated too)
// hold the same elements in the same order, with the same VRs and values as Little Endian
// bytes; group lengths are ignored. Values above 64 KiB stay on disk and are compared in pieces.
// `a_range`, `b_range`: that part of the file (an object inside a segment).
Result<bool> SameElements(const std::filesystem::path& a, const std::filesystem::path& b,
                          const ByteRange* b_range = nullptr, const ByteRange* a_range = nullptr);

}  // namespace teleread
