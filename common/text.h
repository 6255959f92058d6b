#pragma once
// Terminal text layout for tables that mix Latin and CJK text (patient names, descriptions).
#include <string>
#include <string_view>
#include <vector>

namespace teleread {

// Columns `utf8` takes on a terminal: East Asian wide characters count two.
int DisplayWidth(std::string_view utf8);

// `utf8` cut to at most `width` columns (never inside a character) and padded with spaces.
std::string PadToWidth(std::string_view utf8, int width);

// The non-empty pieces of `text` between separators, e.g. the values of a multi-valued DICOM string.
std::vector<std::string> SplitNonEmpty(std::string_view text, char separator);

// Case-folded matching keys for a DICOM person name: one per non-empty component group
// ("Zhang^San=张^三" gives "ZHANG^SAN" and "张^三"). ASCII and Latin-1 letters are upper-cased.
std::vector<std::string> PersonNameKeys(std::string_view utf8_name);

// `utf8` with ASCII and Latin-1 letters upper-cased; other characters unchanged.
std::string FoldCase(std::string_view utf8);

}  // namespace teleread
