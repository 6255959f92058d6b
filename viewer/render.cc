#include "viewer/render.h"

#include "common/dicom.h"
#include "viewer/render_j2k.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmimage/diregist.h"  // lets DicomImage handle colour images
#include "dcmtk/dcmimgle/dcmimage.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"

// PNG goes through libpng's simplified API (png_image_*, libpng 1.6) rather than DCMTK's
// DiPNGPlugin: the plugin writes only what a DicomImage holds, and the contact sheet and the
// read-back in tests need plain RGB buffers.
#include <png.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>

namespace teleread::viewer {
namespace {

// The decoders are process-wide in DCMTK; registered on first use, removed at exit (this static
// is built after DCMTK's own registry, so it is destroyed before it).
void RegisterDecoders() {
  struct Decoders {
    Decoders() {
      DJDecoderRegistration::registerCodecs();
      DJLSDecoderRegistration::registerCodecs();
      DcmRLEDecoderRegistration::registerCodecs();
    }
    ~Decoders() {
      DcmRLEDecoderRegistration::cleanup();
      DJLSDecoderRegistration::cleanup();
      DJDecoderRegistration::cleanup();
    }
  };
  static Decoders decoders;
}

const std::map<std::string, Window, std::less<>>& Presets() {
  static const std::map<std::string, Window, std::less<>> presets = {
      {"lung", {-600, 1500}}, {"bone", {300, 1500}},      {"brain", {40, 80}},
      {"abdomen", {50, 400}}, {"soft-tissue", {50, 350}},
  };
  return presets;
}

// 5x7 glyphs, one byte per row, bit 4 the leftmost pixel.
struct Glyph {
  char c;
  uint8_t rows[7];
};
constexpr Glyph kFont[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {' ', {0, 0, 0, 0, 0, 0, 0}},
    {'-', {0, 0, 0, 0x1F, 0, 0, 0}},
    {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C}},
    {'/', {0, 0x01, 0x02, 0x04, 0x08, 0x10, 0}},
    {':', {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0}},
    {'#', {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04}},
};

const Glyph& GlyphFor(char c) {
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  for (const Glyph& g : kFont) {
    if (g.c == c) return g;
  }
  return kFont[std::size(kFont) - 1];  // '?'
}

std::string Trimmed(const OFString& s) {
  std::string out(s.c_str());
  while (!out.empty() && (out.back() == ' ' || out.back() == '\0')) out.pop_back();
  return out;
}

}  // namespace

std::optional<Window> PresetWindow(std::string_view name) {
  auto it = Presets().find(name);
  if (it == Presets().end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> PresetNames() {
  std::vector<std::string> names;
  for (const auto& [name, window] : Presets()) names.push_back(name);
  return names;
}

std::optional<Window> ParseWindow(std::string_view text) {
  const size_t comma = text.find(',');
  if (comma == std::string_view::npos) return std::nullopt;
  const std::string center(text.substr(0, comma)), width(text.substr(comma + 1));
  char* end = nullptr;
  Window w;
  w.center = std::strtod(center.c_str(), &end);
  if (center.empty() || *end != '\0') return std::nullopt;
  w.width = std::strtod(width.c_str(), &end);
  if (width.empty() || *end != '\0' || !(w.width >= 1) || !std::isfinite(w.center) || !std::isfinite(w.width)) {
    return std::nullopt;
  }
  return w;
}

bool IsImageSopClass(std::string_view sop_class_uid) {
  return dcmIsImageStorageSOPClassUID(std::string(sop_class_uid).c_str());
}

Result<RenderedFrame> RenderFrame(const std::filesystem::path& file, const RenderOptions& options) {
  RegisterDecoders();
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return Status::NotFound("no file " + file.string());
  // Pixel data stays on disk until DicomImage reads the one frame it needs.
  Result<std::unique_ptr<DicomFile>> ff = DicomFile::Open(file, 4096, false);
  if (!ff.ok()) return Status::Corruption(file.string() + ": unreadable DICOM data: " + ff.status().message());
  DcmDataset& ds = ff.value()->dataset();
  if (!ds.tagExists(DCM_PixelData)) {
    OFString sop_class;
    (void)ds.findAndGetOFString(DCM_SOPClassUID, sop_class);
    const char* name = dcmFindNameOfUID(sop_class.c_str(), sop_class.c_str());
    return Status::InvalidArgument(file.filename().string() + " is not an image (" + name + "): no pixel data");
  }
  Sint32 frames = 1;
  if (ds.findAndGetSint32(DCM_NumberOfFrames, frames).bad() || frames < 1) frames = 1;
  if (options.frame < 0 || options.frame >= frames) {
    return Status::InvalidArgument("frame " + std::to_string(options.frame + 1) + " is out of range: the image has " +
                                   std::to_string(frames) + (frames == 1 ? " frame" : " frames") + " (counted from 1)");
  }
  RenderedFrame out;
  out.frames = frames;
  OFString photometric;
  (void)ds.findAndGetOFString(DCM_PhotometricInterpretation, photometric);
  out.photometric = Trimmed(photometric);

  // JPEG 2000 goes through OpenJPEG into a native one-frame copy; DCMTK decodes the rest itself.
  std::unique_ptr<DcmDataset> decoded;
  if (IsJpeg2000(ds)) {
    Result<std::unique_ptr<DcmDataset>> j2k = DecodeJpeg2000Frame(ds, options.frame, frames);
    if (!j2k.ok()) return Status::Corruption(file.string() + ": cannot decode the image: " + j2k.status().message());
    decoded = std::move(j2k).value();
  }
  DicomImage image =
      decoded
          ? DicomImage(static_cast<DcmObject*>(decoded.get()), EXS_LittleEndianExplicit, 0UL, 0UL, 1UL)
          : DicomImage(&ff.value()->format(), ds.getOriginalXfer(), CIF_UsePartialAccessToPixelData, options.frame, 1);
  if (image.getStatus() != EIS_Normal) {
    return Status::Corruption(file.string() + ": cannot decode the image: " + DicomImage::getString(image.getStatus()));
  }
  const bool mono = image.isMonochrome() != 0;
  if (mono) {
    if (options.window) {
      image.setWindow(options.window->center, options.window->width);
    } else if (image.getWindowCount() > 0) {
      image.setWindow(0);
    } else {
      image.setMinMaxWindow(0);
    }
    Window applied;
    if (image.getWindow(applied.center, applied.width)) out.window = applied;
  }
  const int width = static_cast<int>(image.getWidth()), height = static_cast<int>(image.getHeight());
  // Frame 0 of what was loaded, which is the one frame asked for. MONOCHROME1 output is
  // already inverted by DCMTK (its presentation LUT shape defaults to INVERSE for it).
  const auto* data = static_cast<const uint8_t*>(image.getOutputData(8, 0, 0));
  if (!data) {
    return Status::Corruption(file.string() + ": cannot render frame " + std::to_string(options.frame) + ": " +
                              DicomImage::getString(image.getStatus()));
  }
  out.image = RgbImage(width, height);
  const size_t pixels = static_cast<size_t>(width) * height;
  if (mono) {
    for (size_t i = 0; i < pixels; ++i) std::fill_n(&out.image.rgb[i * 3], 3, data[i]);
  } else {
    std::copy(data, data + pixels * 3, out.image.rgb.begin());  // interleaved RGB (planar = 0)
  }
  return out;
}

RgbImage Resize(const RgbImage& image, int width, int height) {
  if (image.width <= 0 || image.height <= 0 || width <= 0 || height <= 0) return RgbImage();
  RgbImage out(width, height);
  // Each output pixel averages the source box it covers; when enlarging the box is one pixel.
  for (int y = 0; y < height; ++y) {
    const int y0 = static_cast<int>(static_cast<int64_t>(y) * image.height / height);
    const int y1 = std::max(y0 + 1, static_cast<int>(static_cast<int64_t>(y + 1) * image.height / height));
    for (int x = 0; x < width; ++x) {
      const int x0 = static_cast<int>(static_cast<int64_t>(x) * image.width / width);
      const int x1 = std::max(x0 + 1, static_cast<int>(static_cast<int64_t>(x + 1) * image.width / width));
      uint32_t sum[3] = {0, 0, 0};
      for (int sy = y0; sy < y1; ++sy) {
        for (int sx = x0; sx < x1; ++sx) {
          const uint8_t* p = image.At(sx, sy);
          sum[0] += p[0];
          sum[1] += p[1];
          sum[2] += p[2];
        }
      }
      const uint32_t n = static_cast<uint32_t>((y1 - y0) * (x1 - x0));
      uint8_t* q = out.At(x, y);
      for (int c = 0; c < 3; ++c) q[c] = static_cast<uint8_t>((sum[c] + n / 2) / n);
    }
  }
  return out;
}

RgbImage FitWithin(const RgbImage& image, int max_width, int max_height) {
  if (image.width <= 0 || image.height <= 0 || max_width <= 0 || max_height <= 0) return RgbImage();
  const double scale =
      std::min(static_cast<double>(max_width) / image.width, static_cast<double>(max_height) / image.height);
  const int w = std::clamp(static_cast<int>(std::lround(image.width * scale)), 1, max_width);
  const int h = std::clamp(static_cast<int>(std::lround(image.height * scale)), 1, max_height);
  return Resize(image, w, h);
}

Status WritePng(const RgbImage& image, const std::filesystem::path& file) {
  if (image.width <= 0 || image.height <= 0) return Status::InvalidArgument("cannot write an empty image");
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = PNG_FORMAT_RGB;
  const std::filesystem::path part = file.string() + ".part";
  if (!png_image_write_to_file(&png, part.c_str(), 0, image.rgb.data(), 0, nullptr)) {
    std::string why = png.message;
    png_image_free(&png);
    std::error_code ec;
    std::filesystem::remove(part, ec);
    return Status::IOError("cannot write " + file.string() + ": " + why);
  }
  std::error_code ec;
  std::filesystem::rename(part, file, ec);
  if (ec) {
    std::filesystem::remove(part, ec);
    return Status::IOError("cannot write " + file.string() + ": " + ec.message());
  }
  return Status::Ok();
}

Result<RgbImage> ReadPng(const std::filesystem::path& file) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&png, file.c_str())) {
    return Status::IOError("cannot read " + file.string() + ": " + png.message);
  }
  png.format = PNG_FORMAT_RGB;
  RgbImage out(static_cast<int>(png.width), static_cast<int>(png.height));
  if (!png_image_finish_read(&png, nullptr, out.rgb.data(), 0, nullptr)) {
    std::string why = png.message;
    png_image_free(&png);
    return Status::IOError("cannot read " + file.string() + ": " + why);
  }
  return out;
}

void DrawLabel(RgbImage& image, int x, int y, std::string_view text, int scale) {
  if (text.empty() || scale < 1) return;
  const int pad = scale, advance = 6 * scale;
  const int box_w = 2 * pad + static_cast<int>(text.size()) * advance - scale, box_h = 2 * pad + 7 * scale;
  auto put = [&](int px, int py, uint8_t v) {
    if (px < 0 || py < 0 || px >= image.width || py >= image.height) return;
    std::fill_n(image.At(px, py), 3, v);
  };
  for (int by = 0; by < box_h; ++by) {
    for (int bx = 0; bx < box_w; ++bx) put(x + bx, y + by, 0);
  }
  for (size_t i = 0; i < text.size(); ++i) {
    const Glyph& g = GlyphFor(text[i]);
    const int gx = x + pad + static_cast<int>(i) * advance, gy = y + pad;
    for (int row = 0; row < 7; ++row) {
      for (int col = 0; col < 5; ++col) {
        if (!(g.rows[row] & (0x10 >> col))) continue;
        for (int sy = 0; sy < scale; ++sy) {
          for (int sx = 0; sx < scale; ++sx) put(gx + col * scale + sx, gy + row * scale + sy, 255);
        }
      }
    }
  }
}

RgbImage ContactSheet(const std::vector<SheetTile>& tiles, int cell) {
  if (tiles.empty() || cell < 1) return RgbImage();
  const int n = static_cast<int>(tiles.size());
  const int columns = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n))));
  const int rows = (n + columns - 1) / columns;
  RgbImage sheet(columns * cell, rows * cell);
  const int label_scale = std::max(1, cell / 128);
  for (int i = 0; i < n; ++i) {
    const int cx = (i % columns) * cell, cy = (i / columns) * cell;
    RgbImage thumb = FitWithin(tiles[i].image, cell, cell);
    const int ox = cx + (cell - thumb.width) / 2, oy = cy + (cell - thumb.height) / 2;
    for (int y = 0; y < thumb.height; ++y) {
      std::copy_n(thumb.At(0, y), static_cast<size_t>(thumb.width) * 3, sheet.At(ox, oy + y));
    }
    DrawLabel(sheet, cx + label_scale, cy + label_scale, tiles[i].label, label_scale);
  }
  return sheet;
}

std::string HalfBlockPreview(const RgbImage& image, int columns) {
  if (image.width <= 0 || image.height <= 0 || columns < 1) return "";
  const int height =
      std::max(1, static_cast<int>(std::lround(static_cast<double>(image.height) * columns / image.width)));
  const RgbImage small = Resize(image, columns, height);
  std::string out;
  char esc[64];
  for (int y = 0; y < height; y += 2) {
    for (int x = 0; x < columns; ++x) {
      const uint8_t* up = small.At(x, y);
      std::snprintf(esc, sizeof esc, "\033[38;2;%d;%d;%dm", up[0], up[1], up[2]);
      out += esc;
      if (y + 1 < height) {
        const uint8_t* down = small.At(x, y + 1);
        std::snprintf(esc, sizeof esc, "\033[48;2;%d;%d;%dm", down[0], down[1], down[2]);
        out += esc;
      } else {
        out += "\033[49m";  // an odd last row: the lower half shows the terminal's background
      }
      out += "\u2580";
    }
    out += "\033[0m\n";
  }
  return out;
}

int TerminalColumns(int fd) {
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

int TerminalRows(int fd) {
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0) return ws.ws_row;
  return 24;
}

}  // namespace teleread::viewer
