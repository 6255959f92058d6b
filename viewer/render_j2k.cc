#include "viewer/render_j2k.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"
#include "dcmtk/dcmdata/dcxfer.h"

#include <openjpeg.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace teleread::viewer {
namespace {

struct MemoryStream {
  const uint8_t* data;
  size_t size;
  size_t pos = 0;
};

OPJ_SIZE_T ReadBytes(void* buffer, OPJ_SIZE_T n, void* user) {
  auto* s = static_cast<MemoryStream*>(user);
  if (s->pos >= s->size) return static_cast<OPJ_SIZE_T>(-1);
  const size_t k = std::min<size_t>(n, s->size - s->pos);
  std::memcpy(buffer, s->data + s->pos, k);
  s->pos += k;
  return k;
}
OPJ_OFF_T SkipBytes(OPJ_OFF_T n, void* user) {
  auto* s = static_cast<MemoryStream*>(user);
  const OPJ_OFF_T k =
      std::clamp<OPJ_OFF_T>(n, -static_cast<OPJ_OFF_T>(s->pos), static_cast<OPJ_OFF_T>(s->size - s->pos));
  s->pos = static_cast<size_t>(static_cast<OPJ_OFF_T>(s->pos) + k);
  return k;
}
OPJ_BOOL SeekBytes(OPJ_OFF_T to, void* user) {
  auto* s = static_cast<MemoryStream*>(user);
  if (to < 0 || static_cast<size_t>(to) > s->size) return OPJ_FALSE;
  s->pos = static_cast<size_t>(to);
  return OPJ_TRUE;
}

// The bytes of one frame: its fragments joined. With one frame, all fragments; with as many
// fragments as frames, one each; otherwise the Basic Offset Table, else code stream starts
// (SOC + SIZ markers) split the fragments.
Result<std::vector<uint8_t>> FrameBytes(DcmDataset& ds, int frame, int frames) {
  DcmElement* element = nullptr;
  if (ds.findAndGetElement(DCM_PixelData, element).bad() || element == nullptr) {
    return Status::Corruption("no pixel data");
  }
  auto* pixels = static_cast<DcmPixelData*>(element);
  DcmPixelSequence* seq = nullptr;
  if (pixels->getEncapsulatedRepresentation(ds.getOriginalXfer(), nullptr, seq).bad() || seq == nullptr) {
    return Status::Corruption("the pixel data is not encapsulated");
  }
  std::vector<std::vector<uint8_t>> fragments;
  std::vector<uint32_t> offsets;
  for (unsigned long i = 0; i < seq->card(); ++i) {
    DcmPixelItem* item = nullptr;
    if (seq->getItem(item, i).bad() || item == nullptr) return Status::Corruption("unreadable fragment");
    Uint8* bytes = nullptr;
    const Uint32 length = item->getLength();
    if (length > 0 && (item->getUint8Array(bytes).bad() || bytes == nullptr)) {
      return Status::Corruption("fragment " + std::to_string(i) + " cannot be read");
    }
    if (i == 0) {
      for (Uint32 k = 0; k + 4 <= length; k += 4) {
        offsets.push_back(uint32_t(bytes[k]) | uint32_t(bytes[k + 1]) << 8 | uint32_t(bytes[k + 2]) << 16 |
                          uint32_t(bytes[k + 3]) << 24);
      }
      continue;
    }
    fragments.emplace_back(bytes, bytes + length);
  }
  if (fragments.empty()) return Status::Corruption("no fragments");
  std::vector<uint8_t> out;
  auto append = [&](const std::vector<uint8_t>& f) { out.insert(out.end(), f.begin(), f.end()); };
  if (frames == 1) {
    for (const auto& f : fragments) append(f);
    return out;
  }
  if (static_cast<int>(fragments.size()) == frames) return fragments[static_cast<size_t>(frame)];
  std::vector<size_t> starts;  // first fragment of each frame
  if (static_cast<int>(offsets.size()) == frames) {
    uint64_t position = 0;
    size_t next = 0;
    for (size_t i = 0; i < fragments.size(); ++i) {
      while (next < offsets.size() && offsets[next] == position) {
        starts.push_back(i);
        ++next;
      }
      position += 8 + fragments[i].size();
    }
  } else {
    for (size_t i = 0; i < fragments.size(); ++i) {
      const auto& f = fragments[i];
      if (f.size() >= 4 && f[0] == 0xFF && f[1] == 0x4F && f[2] == 0xFF && f[3] == 0x51) starts.push_back(i);
    }
  }
  if (static_cast<int>(starts.size()) != frames) return Status::Corruption("cannot find the frames' fragments");
  const size_t end = frame + 1 < frames ? starts[static_cast<size_t>(frame) + 1] : fragments.size();
  for (size_t i = starts[static_cast<size_t>(frame)]; i < end; ++i) append(fragments[i]);
  return out;
}

}  // namespace

bool IsJpeg2000(DcmDataset& ds) {
  switch (ds.getOriginalXfer()) {
    case EXS_JPEG2000LosslessOnly:
    case EXS_JPEG2000:
    case EXS_JPEG2000MulticomponentLosslessOnly:
    case EXS_JPEG2000Multicomponent:
      return true;
    default:
      return false;
  }
}

Result<std::unique_ptr<DcmDataset>> DecodeJpeg2000Frame(DcmDataset& ds, int frame, int frames) {
  Result<std::vector<uint8_t>> bytes = FrameBytes(ds, frame, frames);
  if (!bytes.ok()) return Status::Corruption("JPEG 2000: " + bytes.status().message());
  const std::vector<uint8_t>& code = bytes.value();
  // A JP2 file (signature box) rather than a raw code stream: some writers wrap it.
  static const uint8_t kJp2[] = {0, 0, 0, 0x0C, 'j', 'P', ' ', ' '};
  const bool jp2 = code.size() >= 8 && std::equal(kJp2, kJp2 + 8, code.begin());
  opj_codec_t* codec = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
  opj_dparameters_t params;
  opj_set_default_decoder_parameters(&params);
  MemoryStream mem{code.data(), code.size()};
  opj_stream_t* stream = opj_stream_create(1 << 16, OPJ_TRUE);
  opj_stream_set_user_data(stream, &mem, nullptr);
  opj_stream_set_user_data_length(stream, code.size());
  opj_stream_set_read_function(stream, ReadBytes);
  opj_stream_set_skip_function(stream, SkipBytes);
  opj_stream_set_seek_function(stream, SeekBytes);
  opj_image_t* image = nullptr;
  const bool decoded = opj_setup_decoder(codec, &params) && opj_read_header(stream, codec, &image) &&
                       opj_decode(codec, stream, image) && opj_end_decompress(codec, stream);
  opj_stream_destroy(stream);
  opj_destroy_codec(codec);
  struct ImageGuard {
    opj_image_t* p;
    ~ImageGuard() {
      if (p) opj_image_destroy(p);
    }
  } guard{image};
  if (!decoded || image == nullptr || image->numcomps == 0) {
    return Status::Corruption("JPEG 2000: OpenJPEG cannot decode frame " + std::to_string(frame + 1));
  }

  Uint16 rows = 0, columns = 0, samples = 1, allocated = 0, stored = 0, representation = 0;
  (void)ds.findAndGetUint16(DCM_Rows, rows);
  (void)ds.findAndGetUint16(DCM_Columns, columns);
  (void)ds.findAndGetUint16(DCM_SamplesPerPixel, samples);
  (void)ds.findAndGetUint16(DCM_BitsAllocated, allocated);
  (void)ds.findAndGetUint16(DCM_BitsStored, stored);
  (void)ds.findAndGetUint16(DCM_PixelRepresentation, representation);
  const opj_image_comp_t& c0 = image->comps[0];
  if (c0.w != columns || c0.h != rows || image->numcomps < samples || (samples != 1 && samples != 3)) {
    return Status::Corruption("JPEG 2000: the code stream is " + std::to_string(c0.w) + "x" + std::to_string(c0.h) +
                              " with " + std::to_string(image->numcomps) + " components, the data set says " +
                              std::to_string(columns) + "x" + std::to_string(rows) + " with " +
                              std::to_string(samples));
  }
  for (unsigned c = 1; c < samples; ++c) {
    if (image->comps[c].w != columns || image->comps[c].h != rows) {
      return Status::Corruption("JPEG 2000: subsampled components are not supported");
    }
  }
  if (allocated != 8 && allocated != 16) allocated = c0.prec > 8 ? 16 : 8;
  if (stored == 0 || stored > allocated) stored = static_cast<Uint16>(std::min<OPJ_UINT32>(c0.prec, allocated));

  auto out = std::make_unique<DcmDataset>();
  // What DicomImage reads besides the pixels: the modality and VOI transforms and padding.
  static const DcmTagKey kCopied[] = {DCM_SOPClassUID,
                                      DCM_Modality,
                                      DCM_RescaleSlope,
                                      DCM_RescaleIntercept,
                                      DCM_RescaleType,
                                      DCM_WindowCenter,
                                      DCM_WindowWidth,
                                      DCM_WindowCenterWidthExplanation,
                                      DCM_VOILUTFunction,
                                      DCM_ModalityLUTSequence,
                                      DCM_VOILUTSequence,
                                      DCM_PixelPaddingValue,
                                      DCM_PixelPaddingRangeLimit,
                                      DCM_PresentationLUTShape};
  for (const DcmTagKey& tag : kCopied) {
    DcmElement* e = nullptr;
    if (ds.findAndGetElement(tag, e).good() && e) out->insert(static_cast<DcmElement*>(e->clone()), true);
  }
  OFString photometric;
  (void)ds.findAndGetOFString(DCM_PhotometricInterpretation, photometric);
  // OpenJPEG undoes the reversible or irreversible colour transform: the samples come out RGB.
  if (photometric == "YBR_RCT" || photometric == "YBR_ICT") photometric = "RGB";
  out->putAndInsertOFStringArray(DCM_PhotometricInterpretation, photometric);
  out->putAndInsertUint16(DCM_Rows, rows);
  out->putAndInsertUint16(DCM_Columns, columns);
  out->putAndInsertUint16(DCM_SamplesPerPixel, samples);
  out->putAndInsertUint16(DCM_BitsAllocated, allocated);
  out->putAndInsertUint16(DCM_BitsStored, stored);
  out->putAndInsertUint16(DCM_HighBit, static_cast<Uint16>(stored - 1));
  out->putAndInsertUint16(DCM_PixelRepresentation, representation);
  if (samples > 1) out->putAndInsertUint16(DCM_PlanarConfiguration, 0);

  const size_t pixels = static_cast<size_t>(rows) * columns;
  const uint32_t mask = stored >= 32 ? 0xFFFFFFFFu : (1u << stored) - 1;
  if (allocated == 8) {
    std::vector<Uint8> data(pixels * samples);
    for (size_t i = 0; i < pixels; ++i) {
      for (unsigned c = 0; c < samples; ++c) {
        data[i * samples + c] = static_cast<Uint8>(static_cast<uint32_t>(image->comps[c].data[i]) & mask);
      }
    }
    out->putAndInsertUint8Array(DCM_PixelData, data.data(), static_cast<unsigned long>(data.size()));
  } else {
    std::vector<Uint16> data(pixels * samples);
    for (size_t i = 0; i < pixels; ++i) {
      for (unsigned c = 0; c < samples; ++c) {
        // Two's complement kept within Bits Stored: DCMTK sign-extends from the high bit.
        data[i * samples + c] = static_cast<Uint16>(static_cast<uint32_t>(image->comps[c].data[i]) & mask);
      }
    }
    out->putAndInsertUint16Array(DCM_PixelData, data.data(), static_cast<unsigned long>(data.size()));
  }
  return out;
}

}  // namespace teleread::viewer
