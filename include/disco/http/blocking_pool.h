// BlockingPool: a few threads for work that must not run on an I/O thread
// (bcrypt, database calls), awaited from a coroutine.
//
//   std::optional<User> user;
//   co_await pool.Run([&] { user = repo.Find(id); });
//
// Run() suspends the calling coroutine, runs the function on a pool thread,
// and resumes the coroutine on its own executor (its I/O thread) afterwards,
// so the event loop never waits. An exception thrown by the function is
// rethrown in the coroutine. Threads may be given a lower CPU priority (nice)
// so that CPU-heavy work (bcrypt) never starves the I/O threads.
//
// GCC 12 caveat: a lambda written inside the co_await expression is a
// temporary that GCC 12 destroys twice. Harmless for [&] captures (as above);
// a lambda that captures by value something with a destructor (a
// shared_ptr, a future) must be named before the co_await:
//
//   std::function<void()> task = [state] { state->Load(); };
//   co_await pool.Run(std::move(task));
//
// (Seen by ASan as a double release of the captured shared state;
// tests/integration/http_layer_test.cpp, BlockingPoolTest.)
//
// Thread safety: Run() may be called from any thread or coroutine. The pool
// must outlive every Run() in progress; the destructor finishes queued work.
//
// BatchQueue (below) runs work for many coroutines at once on such a pool,
// e.g. database writes that commit together (group commit).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "disco/http/awaitable.h"

namespace disco::http {

struct BlockingPoolOptions {
  std::string name = "blocking";  // thread name prefix (shown by top -H)
  std::size_t threads = 4;
  int nice = 0;  // added to each pool thread's nice value (Linux: per thread)
};

class BlockingPool {
 public:
  explicit BlockingPool(BlockingPoolOptions options = {});
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  Awaitable<void> Run(std::function<void()> work);

  // Tasks queued or running now: a Run() from its call until its function
  // has returned or thrown (no longer counted when its coroutine resumes),
  // and a BatchQueue while it has batches queued or running.
  std::size_t pending() const;
  std::size_t threads() const;

 private:
  friend class BatchQueue;
  // Runs `task` on a pool thread, counted in pending() like Run()'s work.
  // Nobody waits for it: an exception it throws is logged and dropped.
  void Post(std::function<void()> task);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One unit of work of a BatchQueue: derive the request type from it (its
// input and where the batch function puts the result).
struct BatchItem {
 protected:
  ~BatchItem() = default;
};

// BatchQueue: coroutines hand items over, and one pool thread at a time runs
// them in batches.
//
//   struct Insert : http::BatchItem { Row row; Result<Id> id; };
//   http::BatchQueue inserts(pool, [&](std::span<http::BatchItem* const> batch) {
//     // BEGIN; insert each static_cast<Insert&>(*item); COMMIT; set each id
//   });
//   Insert insert{.row = row};
//   co_await inserts.Submit(insert);  // insert.id is set
//
// Submit() queues the item and suspends the calling coroutine. A pool thread
// takes every item queued so far (at most max_batch), calls the batch
// function once with all of them, resumes each item's coroutine on its own
// executor (its I/O thread), and goes on while items are waiting. Items
// therefore pile up while a batch runs and the next batch takes them all:
// under load one call serves many requests, while a lone request waits for
// no timer (natural batching, no added latency). Batches run one at a time,
// in order of submission; the pool's other threads stay free for Run().
//
// An exception thrown by the batch function is rethrown by the Submit() of
// every item of that batch.
//
// Thread safety: Submit() may be called from any coroutine on any thread.
// The queue and the pool must outlive every Submit() in progress; the item
// belongs to the batch function from Submit() until Submit() returns.
class BatchQueue {
 public:
  using BatchFunction = std::function<void(std::span<BatchItem* const> batch)>;

  BatchQueue(BlockingPool& pool, BatchFunction run, std::size_t max_batch = 64);
  ~BatchQueue();
  BatchQueue(const BatchQueue&) = delete;
  BatchQueue& operator=(const BatchQueue&) = delete;

  Awaitable<void> Submit(BatchItem& item);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with a running batch
};

}  // namespace disco::http
