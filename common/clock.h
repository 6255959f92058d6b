#pragma once
// Time as the workflow sees it: milliseconds since the epoch, from a Clock that tests can set.
#include <chrono>
#include <cstdint>
#include <functional>

namespace teleread {

using Clock = std::function<int64_t()>;

inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace teleread
