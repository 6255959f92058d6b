#pragma once
// A test that needs what this machine lacks (root for a tmpfs, a tool) must not pass silently.
// Catch2 2.13 has no SKIP: under ctest (which sets TELEREAD_SKIP_EXIT; see tests/CMakeLists.txt)
// the test process exits with kSkipExitCode, which ctest's SKIP_RETURN_CODE reports as
// "Not Run (Skipped)". Run by hand, the binary warns and the test returns, so the remaining
// tests still run. Call it before starting anything: no destructor runs on the way out.
#include <string>

namespace teleread::test {

constexpr int kSkipExitCode = 77;

// Exits with kSkipExitCode under ctest; otherwise WARNs and returns.
void Skip(const std::string& reason);

}  // namespace teleread::test

#define TELEREAD_SKIP(reason)       \
  do {                              \
    ::teleread::test::Skip(reason); \
    return;                         \
  } while (0)
