#pragma once
// The write(2) loop every file and memory-file writer needs: short writes and EINTR retried.
#include <string_view>

namespace teleread {

// Writes all of `bytes` to `fd`. 0 when done, else the errno (ENOSPC for a write of nothing).
int WriteAll(int fd, std::string_view bytes);

}  // namespace teleread
