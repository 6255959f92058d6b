#pragma once
// Little endian DICOM bytes written by hand, for tests that send what DCMTK would never encode
// (lying lengths, deep nesting, odd VRs).
#include <cstdint>
#include <optional>
#include <string>

namespace teleread::test {

uint16_t U16(const std::string& b, size_t at);
uint32_t U32(const std::string& b, size_t at);
void PutU16(std::string& b, size_t at, uint16_t v);
void PutU32(std::string& b, size_t at, uint32_t v);
std::string U32Le(uint32_t v);
std::string Tag(uint16_t group, uint16_t element);

// An explicit VR element with a short (2-byte) or long (4-byte) length field as its VR has;
// `declared_length` in place of the value's real length, to lie.
std::string ExplicitElement(uint16_t group, uint16_t element, const std::string& vr, const std::string& value,
                            std::optional<uint32_t> declared_length = std::nullopt);

// Content Sequences nested `depth` deep in explicit VR, undefined lengths, an empty item at the bottom.
std::string NestedSequences(int depth);

// An undefined-length item, and the item and sequence delimiters.
inline const std::string kItem("\xFE\xFF\x00\xE0\xFF\xFF\xFF\xFF", 8);
inline const std::string kItemEnd("\xFE\xFF\x0D\xE0\0\0\0\0", 8);
inline const std::string kSeqEnd("\xFE\xFF\xDD\xE0\0\0\0\0", 8);

}  // namespace teleread::test
