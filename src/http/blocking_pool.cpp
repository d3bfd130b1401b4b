#include "disco/http/blocking_pool.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "disco/detail/asio.h"
#include "http/suspended_coroutine.h"
#include "util/log.h"

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

  // The one way work reaches a pool thread (Run and Post). `work` counts in
  // pending() from this call until it has returned or thrown; its exception
  // is caught (escaping a pool thread, it would std::terminate the process)
  // and handed to `then`, which runs after the count dropped, so a coroutine
  // that `then` resumes never sees its own work still counted.
  template <class Work, class Then>
  void Execute(Work work, Then then) {
    pending.fetch_add(1, std::memory_order_relaxed);
    asio::post(pool, [this, work = std::move(work), then = std::move(then)]() mutable {
      std::exception_ptr error;
      try {
        work();
      } catch (...) {
        error = std::current_exception();
      }
      pending.fetch_sub(1, std::memory_order_relaxed);
      then(std::move(error));
    });
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
  co_await asio::async_initiate<const http::UseAwaitable, void()>(
      [impl, &work, &error](auto handler) {
        impl->Execute([&work] { work(); },
                      [&error, handler = std::move(handler)](std::exception_ptr e) mutable {
                        error = std::move(e);
                        // Completes on the coroutine's own executor (its I/O thread).
                        auto ex = asio::get_associated_executor(handler);
                        asio::post(ex, std::move(handler));
                      });
      },
      http::use_awaitable);
  if (error) std::rethrow_exception(error);
}

void BlockingPool::Post(std::function<void()> task) {
  Impl* impl = impl_.get();
  impl->Execute(std::move(task), [impl](std::exception_ptr error) {
    if (!error) return;
    // Nobody waits for a posted task: say what it threw, and keep the thread.
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      log::Get().error("blocking pool {}: a posted task threw: {}", impl->options.name, e.what());
    } catch (...) {
      log::Get().error("blocking pool {}: a posted task threw something", impl->options.name);
    }
  });
}

struct BatchQueue::Impl : std::enable_shared_from_this<Impl> {
  // A suspended Submit().
  using Waiter = detail::SuspendedCoroutine;
  struct Entry {
    BatchItem* item;
    std::exception_ptr* error;
    std::unique_ptr<Waiter> waiter;
  };

  Impl(BlockingPool& p, BatchFunction r, std::size_t m)
      : pool(p), run(std::move(r)), max_batch(m ? m : 1) {}

  void Queue(Entry entry) {
    bool start = false;
    {
      std::lock_guard lock(mu);
      queue.push_back(std::move(entry));
      start = !running;
      running = true;
    }
    if (start) pool.Post([self = shared_from_this()] { self->Drain(); });
  }

  // On a pool thread; only one Drain() runs at a time (`running`).
  void Drain() {
    std::vector<Entry> batch;
    std::vector<BatchItem*> items;
    for (;;) {
      batch.clear();
      {
        std::lock_guard lock(mu);
        if (queue.empty()) {
          running = false;
          return;
        }
        const std::size_t n = std::min(queue.size(), max_batch);
        std::move(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(n),
                  std::back_inserter(batch));
        queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(n));
      }
      items.clear();
      for (auto& entry : batch) items.push_back(entry.item);
      try {
        run(items);
      } catch (...) {
        for (auto& entry : batch) *entry.error = std::current_exception();
      }
      for (auto& entry : batch) entry.waiter->Resume();
    }
  }

  BlockingPool& pool;
  const BatchFunction run;
  const std::size_t max_batch;
  std::mutex mu;
  std::deque<Entry> queue;
  bool running = false;  // a Drain() is queued or running
};

BatchQueue::BatchQueue(BlockingPool& pool, BatchFunction run, std::size_t max_batch)
    : impl_(std::make_shared<Impl>(pool, std::move(run), max_batch)) {}

BatchQueue::~BatchQueue() = default;

Awaitable<void> BatchQueue::Submit(BatchItem& item) {
  std::exception_ptr error;
  Impl* impl = impl_.get();
  co_await asio::async_initiate<const http::UseAwaitable, void()>(
      [impl, &item, &error](auto handler) {
        impl->Queue({&item, &error, detail::Suspend(std::move(handler))});
      },
      http::use_awaitable);
  if (error) std::rethrow_exception(error);
}

}  // namespace disco::http
