#pragma once
// For background threads (outbox, promoter, index writer...): an exception must not escape a
// thread, where it ends the process (std::terminate), nor silently stop the work.
#include <chrono>
#include <exception>
#include <thread>

#include "common/log.h"

namespace teleread {

// Runs `loop` until it returns (the owner stopping it). An exception escaping it is logged and
// the loop started again after a second, e.g. once file descriptors or memory are back.
template <class Loop>
void RunRestarting(const char* what, Loop&& loop) {
  for (;;) {
    try {
      loop();
      return;
    } catch (const std::exception& e) {
      spdlog::error("{}: {}; restarting in 1 s", what, e.what());
    } catch (...) {
      spdlog::error("{}: unknown exception; restarting in 1 s", what);
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace teleread
