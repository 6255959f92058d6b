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

std::string FoldCase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 'a' && c <= 'z') {
      out += static_cast<char>(c - 32);
    } else if (c == 0xC3 && i + 1 < s.size()) {
      // U+00E0..U+00FE (except U+00F7 division sign) upper-case to U+00C0..U+00DE.
      unsigned char d = static_cast<unsigned char>(s[i + 1]);
      out += static_cast<char>(c);
      out += static_cast<char>(d >= 0xA0 && d <= 0xBE && d != 0xB7 ? d - 0x20 : d);
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::vector<std::string> SplitNonEmpty(std::string_view text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t end = text.find(separator, start);
    std::string_view part = text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (!part.empty()) parts.emplace_back(part);
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

std::vector<std::string> PersonNameKeys(std::string_view name) {
  std::vector<std::string> keys;
  for (std::string& group : SplitNonEmpty(name, '=')) {
    while (!group.empty() && (group.back() == '^' || group.back() == ' ')) group.pop_back();
    if (!group.empty()) keys.push_back(FoldCase(group));
  }
  return keys;
}

}  // namespace teleread
