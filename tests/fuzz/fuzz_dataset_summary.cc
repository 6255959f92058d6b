// libFuzzer target: the input as a received DICOM object (Part 10 or a bare data set) through
// ingest's checks and summary. See tests/fuzz/targets.h and docs/fuzzing.md.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/targets.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  teleread::fuzz::QuietLogging();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)teleread::fuzz::DatasetSummary(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
