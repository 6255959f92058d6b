#include "tests/support/seed.h"

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

namespace teleread::test {

uint32_t TestSeed() {
  const char* fixed = std::getenv("TELEREAD_TEST_SEED");
  const uint32_t seed =
      fixed != nullptr && *fixed != '\0' ? static_cast<uint32_t>(std::stoul(fixed)) : std::random_device{}();
  std::printf("random seed %u (TELEREAD_TEST_SEED=%u repeats this run)\n", seed, seed);
  std::fflush(stdout);
  return seed;
}

}  // namespace teleread::test
