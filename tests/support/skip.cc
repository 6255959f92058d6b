#include "tests/support/skip.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>

namespace teleread::test {

void Skip(const std::string& reason) {
  if (const char* e = std::getenv("TELEREAD_SKIP_EXIT"); e != nullptr && std::string(e) == "1") {
    std::printf("SKIPPED: %s\n", reason.c_str());
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(kSkipExitCode);
  }
  WARN("SKIPPED: " << reason);
}

}  // namespace teleread::test
