#include "viewer/text_raster.h"

#include <ft2build.h>
#include FT_FREETYPE_H

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <vector>

namespace teleread::viewer {
namespace {

// Code points of UTF-8 text; an ill-formed byte becomes U+FFFD.
std::vector<uint32_t> CodePoints(std::string_view s) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || i + n > s.size()) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    uint32_t cp = n == 1 ? c : c & (0x3F >> (n - 1));
    bool ok = true;
    for (int k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      ok &= (b & 0xC0) == 0x80;
      cp = cp << 6 | (b & 0x3F);
    }
    out.push_back(ok ? cp : 0xFFFD);
    i += ok ? n : 1;
  }
  return out;
}

struct Font {
  std::mutex mu;
  FT_Library library = nullptr;
  FT_Face face = nullptr;
  Font() {
    const std::string path = TextFontPath();
    if (path.empty() || FT_Init_FreeType(&library) != 0) return;
    if (FT_New_Face(library, path.c_str(), 0, &face) != 0) face = nullptr;
  }
  ~Font() {
    if (face) FT_Done_Face(face);
    if (library) FT_Done_FreeType(library);
  }
};

Font& TheFont() {
  static Font font;
  return font;
}

// Renders (draw) or measures (!draw) the text; the advance in pixels. Caller holds the lock.
int Layout(Font& f, RgbImage* image, int x, int y, std::string_view utf8, const TextStyle& style) {
  FT_Set_Pixel_Sizes(f.face, 0, static_cast<FT_UInt>(std::max(4, style.pixel_height)));
  const int ascender = static_cast<int>(f.face->size->metrics.ascender >> 6);
  int pen = x;
  for (uint32_t cp : CodePoints(utf8)) {
    if (FT_Load_Char(f.face, cp, image ? FT_LOAD_RENDER : FT_LOAD_DEFAULT) != 0) continue;
    const FT_GlyphSlot g = f.face->glyph;
    if (image) {
      const FT_Bitmap& bm = g->bitmap;
      const int ox = pen + g->bitmap_left, oy = y + ascender - g->bitmap_top;
      auto blend = [&](int px, int py, const uint8_t* colour, int alpha) {
        if (px < 0 || py < 0 || px >= image->width || py >= image->height || alpha <= 0) return;
        uint8_t* p = image->At(px, py);
        for (int c = 0; c < 3; ++c) p[c] = static_cast<uint8_t>((colour[c] * alpha + p[c] * (255 - alpha)) / 255);
      };
      static const uint8_t kBlack[3] = {0, 0, 0};
      for (int pass = style.shadow ? 0 : 1; pass < 2; ++pass) {
        for (unsigned row = 0; row < bm.rows; ++row) {
          for (unsigned col = 0; col < bm.width; ++col) {
            const int a = bm.buffer[row * static_cast<unsigned>(bm.pitch) + col];
            if (pass == 1) {
              blend(ox + static_cast<int>(col), oy + static_cast<int>(row), style.colour, a);
              continue;
            }
            for (int dy = -1; dy <= 1; ++dy) {
              for (int dx = -1; dx <= 1; ++dx)
                blend(ox + static_cast<int>(col) + dx, oy + static_cast<int>(row) + dy, kBlack, a);
            }
          }
        }
      }
    }
    pen += static_cast<int>(g->advance.x >> 6);
  }
  return pen - x;
}

}  // namespace

std::string TextFontPath() {
  if (const char* env = std::getenv("TELEREAD_FONT"); env && *env) return env;
  static const char* kCandidates[] = {
      "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
      "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
      "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
  };
  std::error_code ec;
  for (const char* c : kCandidates) {
    if (std::filesystem::exists(c, ec)) return c;
  }
  return "";
}

int DrawText(RgbImage& image, int x, int y, std::string_view utf8, const TextStyle& style) {
  Font& f = TheFont();
  if (!f.face) {
    const int scale = std::max(1, style.pixel_height / 8);
    DrawLabel(image, x, y, utf8, scale);
    return static_cast<int>(utf8.size()) * 6 * scale;
  }
  std::lock_guard<std::mutex> lock(f.mu);
  return Layout(f, &image, x, y, utf8, style);
}

int TextWidth(std::string_view utf8, int pixel_height) {
  Font& f = TheFont();
  if (!f.face) return static_cast<int>(utf8.size()) * 6 * std::max(1, pixel_height / 8);
  std::lock_guard<std::mutex> lock(f.mu);
  TextStyle style;
  style.pixel_height = pixel_height;
  return Layout(f, nullptr, 0, 0, utf8, style);
}

}  // namespace teleread::viewer
