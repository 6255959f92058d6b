#pragma once
// Runs request handlers off the TLS I/O threads: a handler waits on SQLite, on a group commit or
// on a signature check, and while it does the I/O threads keep serving every other connection's
// handshakes, reads and writes.
//
// Thread-safety: Submit from any thread; Stop from the owner, once the I/O threads have stopped.
#include <functional>
#include <memory>

namespace teleread {

class HandlerPool {
 public:
  explicit HandlerPool(int threads);
  ~HandlerPool();  // Stop()
  HandlerPool(const HandlerPool&) = delete;
  HandlerPool& operator=(const HandlerPool&) = delete;

  void Submit(std::function<void()> work);
  // Finishes what was submitted, then joins the threads; later Submits are dropped.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace teleread
