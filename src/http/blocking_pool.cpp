#include "disco/http/blocking_pool.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <exception>
#include <thread>
#include <vector>

#include "disco/detail/asio.h"

namespace disco::http {

namespace asio = boost::asio;

struct BlockingPool::Impl {
  explicit Impl(BlockingPoolOptions o)
      : options(std::move(o)), size(options.threads ? options.threads : 1), pool(size) {
    // Name and renice every pool thread from inside it (nice is per thread on
    // Linux). Each setup task waits until all have started, so no thread
    // takes two of them. `arrived` is a member: a thread may still be reading
    // it after the constructor returned.
    for (std::size_t i = 0; i < size; ++i) {
      asio::post(pool, [this, i] {
        std::string name = options.name.substr(0, 12) + "-" + std::to_string(i);
        pthread_setname_np(pthread_self(), name.c_str());
        if (options.nice != 0) {
          auto tid = static_cast<id_t>(syscall(SYS_gettid));
          setpriority(PRIO_PROCESS, tid, getpriority(PRIO_PROCESS, tid) + options.nice);
        }
        arrived.fetch_add(1);
        while (arrived.load() < size) std::this_thread::yield();
      });
    }
    while (arrived.load() < size) std::this_thread::yield();
  }

  BlockingPoolOptions options;
  const std::size_t size;
  std::atomic<std::size_t> arrived{0};
  asio::thread_pool pool;
  std::atomic<std::size_t> pending{0};
};

BlockingPool::BlockingPool(BlockingPoolOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

BlockingPool::~BlockingPool() { impl_->pool.join(); }

std::size_t BlockingPool::pending() const { return impl_->pending.load(std::memory_order_relaxed); }
std::size_t BlockingPool::threads() const { return impl_->size; }

Awaitable<void> BlockingPool::Run(std::function<void()> work) {
  std::exception_ptr error;
  Impl* impl = impl_.get();
  impl->pending.fetch_add(1, std::memory_order_relaxed);
  co_await asio::async_initiate<const asio::use_awaitable_t<>, void()>(
      [impl, &work, &error](auto handler) {
        asio::post(impl->pool, [impl, &work, &error, handler = std::move(handler)]() mutable {
          try {
            work();
          } catch (...) {
            error = std::current_exception();
          }
          impl->pending.fetch_sub(1, std::memory_order_relaxed);
          // Completes on the coroutine's own executor (its I/O thread).
          auto ex = asio::get_associated_executor(handler);
          asio::post(ex, std::move(handler));
        });
      },
      asio::use_awaitable);
  if (error) std::rethrow_exception(error);
}

}  // namespace disco::http
