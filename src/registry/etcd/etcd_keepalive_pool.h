// KeepAlivePool: the keep-alives of every registration of one etcd registry,
// run on a few threads from one timer queue.
//
// Why not a thread per registration: a process that registers many
// instances (a sidecar, a test harness, bench/registry_scale's 100 × 100)
// had as many threads, all waking every TTL/3; at 10,000 registrations the
// machine spent its time scheduling them and the keep-alives timed out.
// A task here runs one synchronous refresh (bounded by its call deadline),
// so a few threads keep up with thousands of leases; more than one, so a
// member that hangs a call until its per-try deadline delays the others by
// at most that deadline.
//
// Thread safety: all methods may be called from any thread except from
// inside a task (Remove would wait for itself).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace disco::etcd {

class KeepAlivePool {
 public:
  // Runs one refresh; returns the delay until the next one.
  using Task = std::function<std::chrono::milliseconds()>;

  // Threads start with the first task.
  explicit KeepAlivePool(std::size_t threads = 4);
  ~KeepAlivePool();
  KeepAlivePool(const KeepAlivePool&) = delete;
  KeepAlivePool& operator=(const KeepAlivePool&) = delete;

  // Schedules `task` to run first after `delay`; returns its id.
  std::uint64_t Add(std::chrono::milliseconds delay, Task task);
  // After Remove returns the task never runs again; if it is running now,
  // Remove waits for that run to end (cancel its call first to be quick).
  void Remove(std::uint64_t id);

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    Task task;
    std::multimap<Clock::time_point, std::uint64_t>::iterator due;  // valid when queued
    bool queued = false;
    bool running = false;
    bool removed = false;
  };

  void Work();

  const std::size_t thread_count_;
  std::mutex mu_;
  std::condition_variable wake_;      // the queue changed, or stop
  std::condition_variable finished_;  // a run ended
  std::multimap<Clock::time_point, std::uint64_t> queue_;
  std::unordered_map<std::uint64_t, Entry> entries_;
  std::uint64_t next_id_ = 1;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace disco::etcd
