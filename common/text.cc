#include "common/text.h"

namespace teleread {
namespace {

// Decodes one UTF-8 sequence at s[i]; returns its length (1 for a stray byte).
size_t Decode(std::string_view s, size_t i, char32_t* cp) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
  if (i + len > s.size()) len = 1;
  if (len == 1) {
    *cp = c;
    return 1;
  }
  char32_t v = c & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) v = (v << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  *cp = v;
  return len;
}

bool IsWide(char32_t cp) {
  return (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF) || (cp >= 0xAC00 && cp <= 0xD7A3) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
         (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x20000 && cp <= 0x3FFFD);
}

}  // namespace

int DisplayWidth(std::string_view s) {
  int width = 0;
  char32_t cp = 0;
  for (size_t i = 0; i < s.size();) {
    i += Decode(s, i, &cp);
    width += IsWide(cp) ? 2 : 1;
  }
  return width;
}

std::string PadToWidth(std::string_view s, int width) {
  std::string out;
  int used = 0;
  char32_t cp = 0;
  for (size_t i = 0; i < s.size();) {
    size_t len = Decode(s, i, &cp);
    int w = IsWide(cp) ? 2 : 1;
    if (used + w > width) break;
    out.append(s.substr(i, len));
    used += w;
    i += len;
  }
  out.append(static_cast<size_t>(width - used), ' ');
  return out;
}

}  // namespace teleread
