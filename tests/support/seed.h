#pragma once
// The seed of a randomised test: TELEREAD_TEST_SEED when set (to repeat a failure), else a fresh
// one. Either way it is printed on stdout (kept in ctest's log); the caller INFOs it for failures.
#include <cstdint>

namespace teleread::test {

uint32_t TestSeed();

}  // namespace teleread::test
