#pragma once
#include <string>

namespace teleread::viewer {
// The banner `teleread --version` prints.
std::string VersionBanner();
}  // namespace teleread::viewer
