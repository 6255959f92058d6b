#pragma once
// JPEG 2000 frames decoded with OpenJPEG (libopenjp2): DCMTK 3.6.7 has no JPEG 2000 codec.
// Internal to the renderer: it turns one compressed frame into a small native data set that
// DCMTK's DicomImage then windows like any other, so JPEG 2000 images render exactly as the
// same pixels stored uncompressed would.
#include <memory>

#include "common/status.h"

class DcmDataset;

namespace teleread::viewer {

// Whether the data set's original transfer syntax is JPEG 2000 (Part 1 lossless or lossy, or
// Part 2 multi-component).
bool IsJpeg2000(DcmDataset& ds);

// A native (Explicit VR Little Endian) data set holding frame `frame` (0-based) of `ds` and the
// attributes a DicomImage needs to display it (pixel module, rescale, VOI). Corruption naming
// the reason when the code stream cannot be decoded or does not match the pixel module.
Result<std::unique_ptr<DcmDataset>> DecodeJpeg2000Frame(DcmDataset& ds, int frame, int frames);

}  // namespace teleread::viewer
