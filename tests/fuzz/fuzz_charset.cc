// libFuzzer target: "<Specific Character Set>\n<text>" through the character-set decoding and
// encoding and common/text.h; a broken invariant aborts. See tests/fuzz/targets.h.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  teleread::fuzz::QuietLogging();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  teleread::fuzz::CharsetOutcome out =
      teleread::fuzz::Charset(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!out.broken.empty()) {
    std::fprintf(stderr, "invariant broken: %s\n", out.broken.c_str());
    std::abort();
  }
  return 0;
}
