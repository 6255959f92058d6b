#pragma once
// Whether a file system really keeps O_DIRECT writes out of the page cache: some refuse the flag
// (tmpfs before Linux 6.6), some take it and cache anyway (tmpfs since 6.6, ext4 data=journal), and
// a test that looks at residency can only tell our two write paths apart where it holds.
#include <filesystem>

namespace teleread::test {

bool DirectWritesSkipCache(const std::filesystem::path& dir);

}  // namespace teleread::test
