#pragma once
// Stored images turned into pixels a radiologist can look at: one frame rendered to 8-bit RGB
// with a chosen window, written as PNG, tiled into a labelled contact sheet, or drawn on a
// terminal with 24-bit colour half blocks. This is the viewer's DICOM adapter: DCMTK (and
// libpng) stay inside render.cc; callers see RgbImage and Window.
//
// Threads: every function works on its arguments only and may be called from any thread.
// The DCMTK decoders (JPEG, JPEG-LS, RLE) are registered once, on the first RenderFrame.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace teleread::viewer {

// A VOI window in modality units (after Rescale Slope/Intercept), as in PS3.3 C.11.2.1.2.
struct Window {
  double center = 0;
  double width = 1;
};

// lung -600/1500, bone 300/1500, brain 40/80, abdomen 50/400, soft-tissue 50/350; nullopt for
// any other name.
std::optional<Window> PresetWindow(std::string_view name);
std::vector<std::string> PresetNames();

// "C,W" as typed on a command line ("-600,1500", "40,80"); nullopt when malformed or W < 1.
std::optional<Window> ParseWindow(std::string_view text);

// 8-bit RGB, row-major, 3 bytes per pixel, no row padding.
struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;

  RgbImage() = default;
  RgbImage(int w, int h) : width(w), height(h), rgb(static_cast<size_t>(w) * h * 3, 0) {}
  uint8_t* At(int x, int y) { return &rgb[(static_cast<size_t>(y) * width + x) * 3]; }
  const uint8_t* At(int x, int y) const { return &rgb[(static_cast<size_t>(y) * width + x) * 3]; }
};

struct RenderOptions {
  int frame = 0;                 // 0-based (messages and the CLI count from 1, as DICOM does)
  std::optional<Window> window;  // nullopt: the file's first VOI window, else the frame's min/max
};

struct RenderedFrame {
  RgbImage image;
  int frames = 1;                // in the file
  std::optional<Window> window;  // the window applied; nullopt for colour images (not windowed)
  std::string photometric;       // as stored: MONOCHROME1, MONOCHROME2, RGB, YBR_FULL_422, ...
};

// Renders one frame. Monochrome images go through the modality rescale and the window, and
// MONOCHROME1 comes out inverted (low stored values bright) as it is meant to be displayed.
// Colour images (RGB, YBR_*, palette) are converted to RGB without windowing. Compressed
// transfer syntaxes are decoded (JPEG, JPEG-LS, RLE by DCMTK; JPEG 2000 by OpenJPEG); only the
// frame asked for is read. NotFound when the file is missing; InvalidArgument when the object has no pixel
// data (an SR, a KO, ...) or the frame is out of range; Corruption when it cannot be decoded.
Result<RenderedFrame> RenderFrame(const std::filesystem::path& file, const RenderOptions& options);

// Whether a SOP Class UID stores images (DCMTK's list of image storage classes).
bool IsImageSopClass(std::string_view sop_class_uid);

// Exactly width x height: the average of the covered source pixels when shrinking, the nearest
// pixel when enlarging. An empty image stays empty.
RgbImage Resize(const RgbImage& image, int width, int height);
// The largest copy that fits in max_width x max_height with the same aspect ratio (at least 1x1).
RgbImage FitWithin(const RgbImage& image, int max_width, int max_height);

// 8-bit RGB PNG. Written to "<file>.part" and renamed, so `file` is never half written.
// IOError naming the file on failure.
Status WritePng(const RgbImage& image, const std::filesystem::path& file);
// Any PNG, converted to 8-bit RGB. IOError naming the file on failure.
Result<RgbImage> ReadPng(const std::filesystem::path& file);

// `text` in the built-in 5x7 bitmap font (digits, A-Z, space and - . / : #; anything else
// draws as '?'), white on a black box, top-left corner at (x, y), each font pixel scale x scale.
// Clipped at the image's edges.
void DrawLabel(RgbImage& image, int x, int y, std::string_view text, int scale);

struct SheetTile {
  RgbImage image;
  std::string label;  // e.g. the instance number
};

// The tiles in a grid of ceil(sqrt(n)) columns of square cells `cell` pixels wide, each scaled
// to fit its cell, centred on black and labelled in its top-left corner. Empty for no tiles.
RgbImage ContactSheet(const std::vector<SheetTile>& tiles, int cell = 256);

// The image as text for a 24-bit colour terminal: `columns` characters wide, the height keeping
// the aspect ratio, each character an upper half block "▀" whose foreground
// (ESC[38;2;R;G;Bm) is the upper pixel and background (ESC[48;2;R;G;Bm) the lower one; so
// each line shows two pixel rows. Every line ends with ESC[0m and "\n".
std::string HalfBlockPreview(const RgbImage& image, int columns);

// The width of the terminal on `fd` (ioctl TIOCGWINSZ); 80 when `fd` is not a terminal.
int TerminalColumns(int fd);
// The height of the terminal on `fd` in lines; 24 when `fd` is not a terminal.
int TerminalRows(int fd);

}  // namespace teleread::viewer
