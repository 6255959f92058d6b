#pragma once

namespace teleread {
inline constexpr const char* kVersion = "0.1.0";
}
