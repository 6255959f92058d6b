#include "tests/support/dicom_bytes.h"

namespace teleread::test {

uint16_t U16(const std::string& b, size_t at) {
  return static_cast<uint16_t>(static_cast<unsigned char>(b[at]) | (static_cast<unsigned char>(b[at + 1]) << 8));
}

uint32_t U32(const std::string& b, size_t at) { return U16(b, at) | (uint32_t{U16(b, at + 2)} << 16); }

void PutU16(std::string& b, size_t at, uint16_t v) {
  b[at] = static_cast<char>(v & 0xFF);
  b[at + 1] = static_cast<char>(v >> 8);
}

void PutU32(std::string& b, size_t at, uint32_t v) {
  PutU16(b, at, static_cast<uint16_t>(v & 0xFFFF));
  PutU16(b, at + 2, static_cast<uint16_t>(v >> 16));
}

std::string U32Le(uint32_t v) {
  std::string out(4, '\0');
  PutU32(out, 0, v);
  return out;
}

std::string Tag(uint16_t group, uint16_t element) {
  std::string t(4, '\0');
  PutU16(t, 0, group);
  PutU16(t, 2, element);
  return t;
}

std::string ExplicitElement(uint16_t group, uint16_t element, const std::string& vr, const std::string& value,
                            std::optional<uint32_t> declared_length) {
  const bool long_form = vr == "OB" || vr == "OW" || vr == "SQ" || vr == "UN" || vr == "UT";
  std::string out = Tag(group, element) + vr;
  const uint32_t length = declared_length.value_or(static_cast<uint32_t>(value.size()));
  if (long_form) {
    out += std::string(2, '\0');
    out += U32Le(length);
  } else {
    std::string l(2, '\0');
    PutU16(l, 0, static_cast<uint16_t>(length));
    out += l;
  }
  return out + value;
}

std::string NestedSequences(int depth) {
  const std::string undefined = "\xFF\xFF\xFF\xFF";
  const std::string zero(4, '\0');
  std::string open, close;
  for (int i = 0; i < depth; ++i) {
    open += Tag(0x0040, 0xA730) + "SQ" + std::string(2, '\0') + undefined;  // Content Sequence
    open += Tag(0xFFFE, 0xE000) + undefined;                                // item
    close += Tag(0xFFFE, 0xE00D) + zero + Tag(0xFFFE, 0xE0DD) + zero;       // item, sequence delimiters
  }
  return open + close;
}

}  // namespace teleread::test
