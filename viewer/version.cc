#include "viewer/version.h"

#include "common/version.h"

namespace teleread::viewer {
std::string VersionBanner() { return std::string("teleread ") + kVersion + " (reading workstation)"; }
}  // namespace teleread::viewer
