#pragma once
// DICOM's ISO 2022 code extensions (PS3.5 6.1.2.5), which DCMTK's converter as built on Debian
// refuses ("Cannot open character encoding"): Japanese (ISO 2022 IR 13, 87, 159), Korean
// (IR 149), Chinese (IR 58) and the single-byte sets in G1 (IR 100 ...). Escape sequences switch
// G0/G1; each run is converted with iconv; delimiters return to the value's initial sets.
#include <string>
#include <string_view>

#include "common/status.h"

class DcmDataset;

namespace teleread {

// Whether a Specific Character Set value (backslash-separated terms) uses code extensions.
bool UsesIso2022(std::string_view specific_character_set);

// `raw` decoded to UTF-8. InvalidArgument naming the term or escape sequence that is not
// supported, or the bytes that are not valid in their set.
Result<std::string> DecodeIso2022(std::string_view specific_character_set, std::string_view raw,
                                  std::string_view delimiters);

// Every text value of `item` (PN, LO, SH, ST, LT, UT, UC; sequences included) re-encoded as
// UTF-8 and Specific Character Set set to ISO_IR 192: DCMTK's convertToUTF8 for what it
// supports, ours for code extensions.
Status ConvertDatasetToUtf8(DcmDataset& dataset);

}  // namespace teleread
