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
// Thread safety: Run() may be called from any thread or coroutine. The pool
// must outlive every Run() in progress; the destructor finishes queued work.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
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

  // Tasks queued or running now.
  std::size_t pending() const;
  std::size_t threads() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace disco::http
