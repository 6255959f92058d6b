#pragma once
// The write(2) loop every file and memory-file writer needs: short writes and EINTR retried.
#include <cstdint>
#include <string_view>

namespace teleread {

// Writes all of `bytes` to `fd`. 0 when done, else the errno (ENOSPC for a write of nothing).
int WriteAll(int fd, std::string_view bytes);
// The same with pwrite(2) from `offset`.
int PWriteAll(int fd, std::string_view bytes, uint64_t offset);

}  // namespace teleread
