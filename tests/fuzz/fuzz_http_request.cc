// libFuzzer target: the input as HTTP/1.1 requests from one of a few callers, parsed as the
// transport parses them and answered by ReadingApi::Handle. An exception escaping the handler
// counts as a crash: the transport would answer 500 to what is a client's error.
// See tests/fuzz/targets.h and docs/fuzzing.md.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "tests/fuzz/targets.h"

namespace {
std::unique_ptr<teleread::fuzz::HttpTarget> target;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  teleread::fuzz::QuietLogging();
  target = std::make_unique<teleread::fuzz::HttpTarget>();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)target->Exchange(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
