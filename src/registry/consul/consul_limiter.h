// RequestLimiter: at most `limit` Consul requests of one kind in flight at
// once; the others wait their turn, first come first served.
//
// Why: an agent closes connections past `limits.http_max_conns_per_client`
// (200 by default) from one client address — and every process on a host
// talks to its local agent from the same address. One disco process with
// 10,000 registrations sent their heartbeats as bursts of parallel requests
// and the agent reset thousands of them (bench/registry_scale). Watches get
// a lane of their own so that long-held blocking queries can never take
// the connections that keep registrations alive.
//
// I/O thread only, like everything in consul_http.h.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>

#include "disco/detail/asio.h"

namespace disco::consul {

class CancelSlot;

class RequestLimiter {
 public:
  explicit RequestLimiter(std::size_t limit) : limit_(limit) {}

  // Frees its slot when destroyed (it then goes to the longest waiter).
  class Permit {
   public:
    Permit() = default;
    explicit Permit(RequestLimiter* owner) : owner_(owner) {}
    Permit(Permit&& other) noexcept : owner_(other.owner_) { other.owner_ = nullptr; }
    Permit& operator=(Permit&&) = delete;
    ~Permit() {
      if (owner_) owner_->Release();
    }
    bool granted() const { return owner_ != nullptr; }

   private:
    RequestLimiter* owner_ = nullptr;
  };

  // Waits for a slot. Not granted when `slot` is cancelled while waiting.
  boost::asio::awaitable<Permit> Acquire(CancelSlot* slot);

  std::size_t in_flight() const { return in_flight_; }
  std::size_t waiting() const { return waiters_.size(); }

 private:
  // Shared by the waiting coroutine and the queue, so that a Release never
  // touches a timer whose coroutine frame is gone (io_context teardown).
  struct Waiter {
    explicit Waiter(const boost::asio::any_io_executor& executor) : timer(executor) {}
    bool granted = false;
    boost::asio::steady_timer timer;
  };
  void Release();

  const std::size_t limit_;
  std::size_t in_flight_ = 0;
  std::deque<std::shared_ptr<Waiter>> waiters_;
};

}  // namespace disco::consul
