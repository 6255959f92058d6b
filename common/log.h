#pragma once
// Process-wide logging on spdlog. Info level carries no patient names; identifying details
// (names, IDs) go to debug only.
#include <spdlog/spdlog.h>

#include <string>

namespace teleread {

// level: "trace", "debug", "info", "warn", "error". Call once at start-up.
void SetUpLogging(const std::string& level);

}  // namespace teleread
