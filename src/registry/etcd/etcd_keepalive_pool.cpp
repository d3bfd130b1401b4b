#include "registry/etcd/etcd_keepalive_pool.h"

#include <algorithm>

namespace disco::etcd {

KeepAlivePool::KeepAlivePool(std::size_t threads) : thread_count_(std::max<std::size_t>(threads, 1)) {}

KeepAlivePool::~KeepAlivePool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& thread : threads_) thread.join();
}

std::uint64_t KeepAlivePool::Add(std::chrono::milliseconds delay, Task task) {
  std::lock_guard lock(mu_);
  if (threads_.empty()) {
    for (std::size_t i = 0; i < thread_count_; ++i) threads_.emplace_back([this] { Work(); });
  }
  const auto id = next_id_++;
  auto& entry = entries_[id];
  entry.task = std::move(task);
  entry.due = queue_.emplace(Clock::now() + delay, id);
  entry.queued = true;
  wake_.notify_one();
  return id;
}

void KeepAlivePool::Remove(std::uint64_t id) {
  std::unique_lock lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  if (it->second.running) {
    it->second.removed = true;
    finished_.wait(lock, [&] { return !entries_.contains(id); });
    return;
  }
  if (it->second.queued) queue_.erase(it->second.due);
  entries_.erase(it);
}

void KeepAlivePool::Work() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (queue_.empty()) {
      wake_.wait(lock);
      continue;
    }
    const auto first = queue_.begin();
    // A copy: while this thread waits, another may take that entry and free
    // its node (ASan caught wait_until reading the key it was given).
    const Clock::time_point due = first->first;
    if (due > Clock::now()) {
      wake_.wait_until(lock, due);
      continue;
    }
    const auto id = first->second;
    queue_.erase(first);
    auto& entry = entries_.at(id);  // unordered_map references survive rehashing
    entry.queued = false;
    entry.running = true;
    // Another thread may take the next due task meanwhile.
    wake_.notify_one();
    lock.unlock();
    const auto delay = entry.task();
    lock.lock();
    entry.running = false;
    if (entry.removed) {
      entries_.erase(id);
      finished_.notify_all();
    } else {
      entry.due = queue_.emplace(Clock::now() + delay, id);
      entry.queued = true;
    }
  }
}

}  // namespace disco::etcd
