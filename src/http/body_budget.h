// One bound on the request bodies a server holds at once, across all its
// connections. Each connection's body is bounded by body_limit, but
// max_connections (up to 16,384) of them at 1 MiB each is 16 GiB: a client
// that sends large bodies slowly on many connections would take that much.
// The budget counts body bytes as they arrive, and a request whose bytes do
// not fit is answered 503 with Retry-After; the bytes are given back when the
// request has been answered (or its connection is gone). Private to src/http (the server).
#pragma once

#include <atomic>
#include <cstddef>

namespace disco::http::detail {

class BodyBudget {
 public:
  explicit BodyBudget(std::size_t limit) : limit_(limit) {}
  std::size_t limit() const { return limit_; }
  std::size_t used() const { return used_.load(std::memory_order_relaxed); }

  // What one request holds; given back by Release() or the destructor.
  class Holding {
   public:
    explicit Holding(BodyBudget& budget) : budget_(budget) {}
    ~Holding() { Release(); }
    Holding(const Holding&) = delete;
    Holding& operator=(const Holding&) = delete;

    // False (and nothing taken) when n more bytes would pass the limit.
    bool Take(std::size_t n) {
      if (n == 0) return true;
      std::size_t used = budget_.used_.load(std::memory_order_relaxed);
      do {
        if (!budget_.Fits(used, n)) return false;
      } while (!budget_.used_.compare_exchange_weak(used, used + n, std::memory_order_relaxed));
      held_ += n;
      return true;
    }
    void Release() {
      if (held_ != 0) budget_.used_.fetch_sub(held_, std::memory_order_relaxed);
      held_ = 0;
    }

   private:
    BodyBudget& budget_;
    std::size_t held_ = 0;
  };

  // Whether n more bytes would fit now (a hint: others may take them first).
  bool Available(std::size_t n) const { return Fits(used(), n); }

 private:
  bool Fits(std::size_t used, std::size_t n) const { return n <= limit_ && used <= limit_ - n; }

  const std::size_t limit_;
  std::atomic<std::size_t> used_{0};
};

}  // namespace disco::http::detail
