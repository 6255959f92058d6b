#pragma once
// Whether a file system really keeps O_DIRECT writes out of the page cache: some refuse the flag
// (tmpfs before Linux 6.6), some take it and cache anyway (tmpfs since 6.6, ext4 data=journal), and
// a test that looks at residency can only tell our two write paths apart where it holds.
#include <cstddef>
#include <filesystem>
#include <string>
#include <utility>

namespace teleread::test {

bool DirectWritesSkipCache(const std::filesystem::path& dir);
// Whether `dir`'s file system takes O_DIRECT at all (tmpfs before Linux 6.6 does not).
bool TakesDirect(const std::filesystem::path& dir);
// `n` pseudo-random bytes from `seed`, the last one not zero (not mistaken for padding).
std::string Pattern(size_t n, unsigned seed);

// {pages of `path` in the page cache, pages of the file} ({0, 0} for an empty file). Fails the
// test when the file cannot be mapped.
std::pair<size_t, size_t> Residency(const std::filesystem::path& path);

}  // namespace teleread::test
