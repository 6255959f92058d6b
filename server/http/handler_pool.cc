#include "server/http/handler_pool.h"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <mutex>

namespace teleread {

struct HandlerPool::Impl {
  explicit Impl(int threads) : pool(static_cast<size_t>(threads)) {}
  boost::asio::thread_pool pool;
  std::mutex mu;
  bool stopped = false;  // guarded by mu
};

HandlerPool::HandlerPool(int threads) : impl_(std::make_unique<Impl>(threads)) {}

HandlerPool::~HandlerPool() { Stop(); }

void HandlerPool::Submit(std::function<void()> work) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->stopped) return;
  boost::asio::post(impl_->pool, std::move(work));
}

void HandlerPool::Stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  impl_->pool.join();
}

}  // namespace teleread
