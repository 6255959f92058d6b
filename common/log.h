#pragma once
// Process-wide logging on spdlog. Info level carries no patient names; identifying details
// (names, IDs) go to debug only.
#include <spdlog/spdlog.h>

#include <string>

namespace teleread {

// level: "trace", "debug", "info", "warn", "error". Call once at start-up.
void SetUpLogging(const std::string& level);

// DCMTK's oflog output goes to the spdlog default logger (errors and warnings as such, its
// info and debug as debug). Called by InitializeDicom; again after replacing the default logger
// is not needed (spdlog::log finds the current one).
void RouteDcmtkLogging();

}  // namespace teleread
