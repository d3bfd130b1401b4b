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
asio::awaitable<RequestLimiter::Permit> RequestLimiter::Acquire(CancelSlot* slot) {
  if (in_flight_ < limit_ && waiters_.empty()) {
    ++in_flight_;
    co_return Permit(this);
  }
  auto waiter = std::make_shared<Waiter>(co_await asio::this_coro::executor);
  waiters_.push_back(waiter);
  // Woken by Release (granted) or by the slot's Cancel (a watch being
  // stopped). The slot holds a weak reference: the waiter may go first.
  if (slot) {
    slot->OnCancel([weak = std::weak_ptr<Waiter>(waiter)] {
      if (auto w = weak.lock()) w->timer.cancel();
    });
  }
  waiter->timer.expires_at(asio::steady_timer::time_point::max());
  while (!waiter->granted && !(slot && slot->cancelled())) {
    boost::system::error_code ec;
    co_await waiter->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  if (slot) slot->OnCancel(nullptr);
  if (!waiter->granted) {
    std::erase(waiters_, waiter);
    co_return Permit();
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
