#include "registry/consul/consul_limiter.h"

#include <algorithm>
#include <chrono>

#include "registry/consul/consul_http.h"

namespace disco::consul {

namespace asio = boost::asio;

// GCC 12 reports asio's coroutine frame operator delete as mismatched with
// its operator new (a false positive on the frame allocator, GCC PR 103485).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
asio::awaitable<RequestLimiter::Permit> RequestLimiter::Acquire(const CancelSlot* slot) {
  if (in_flight_ < limit_ && waiters_.empty()) {
    ++in_flight_;
    co_return Permit(this);
  }
  auto waiter = std::make_shared<Waiter>(co_await asio::this_coro::executor);
  waiters_.push_back(waiter);
  // Woken by Release (the timer cancelled), or every 200 ms to see whether
  // the request was cancelled meanwhile (a watch being stopped).
  while (!waiter->granted) {
    if (slot && slot->cancelled()) {
      std::erase(waiters_, waiter);
      co_return Permit();
    }
    waiter->timer.expires_after(std::chrono::milliseconds(200));
    boost::system::error_code ec;
    co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return Permit(this);
}
#pragma GCC diagnostic pop

void RequestLimiter::Release() {
  if (!waiters_.empty()) {
    // The slot passes to the first waiter: in_flight_ stays.
    auto next = std::move(waiters_.front());
    waiters_.pop_front();
    next->granted = true;
    next->timer.cancel();
    return;
  }
  --in_flight_;
}

}  // namespace disco::consul
