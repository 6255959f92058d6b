#pragma once
// Terminal text layout for tables that mix Latin and CJK text (patient names, descriptions).
#include <string>
#include <string_view>

namespace teleread {

// Columns `utf8` takes on a terminal: East Asian wide characters count two.
int DisplayWidth(std::string_view utf8);

// `utf8` cut to at most `width` columns (never inside a character) and padded with spaces.
std::string PadToWidth(std::string_view utf8, int width);

}  // namespace teleread
