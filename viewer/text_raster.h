#pragma once
// Text drawn into rendered images (burned-in overlays, ECG labels, tile reasons) in any script:
// patient names stay in their own writing (张^三, 山田^太郎, Müller^Jürgen). FreeType renders the
// glyphs from a CJK-capable TrueType font (fonts-wqy-microhei: Latin, Greek, Cyrillic, Chinese,
// Japanese kana and kanji, Hangul in one 5 MB file); the 5x7 bitmap font of render.h only knows
// A-Z and digits.
//
// Threads: the font is loaded once (under a lock) and glyphs are rendered under the same lock,
// so any thread may call these.
#include <cstdint>
#include <string>
#include <string_view>

#include "viewer/render.h"

namespace teleread::viewer {

// The font file used: $TELEREAD_FONT, else the first of the Debian CJK fonts that exists; empty
// when none does (text is then drawn with the 5x7 bitmap font, non-ASCII as '?').
std::string TextFontPath();

struct TextStyle {
  int pixel_height = 14;  // the em height
  uint8_t colour[3] = {255, 255, 255};
  bool shadow = true;  // a 1-pixel dark outline, legible on any image
};

// Draws `utf8` with its top-left corner at (x, y); clipped at the image's edges. Returns the
// width drawn in pixels.
int DrawText(RgbImage& image, int x, int y, std::string_view utf8, const TextStyle& style = {});

// The width `utf8` would take, without drawing.
int TextWidth(std::string_view utf8, int pixel_height);

}  // namespace teleread::viewer
