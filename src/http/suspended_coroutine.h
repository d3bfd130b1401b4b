// A coroutine suspended in a queue (AdmissionQueue, BatchQueue), resumed by
// whichever thread decides its turn. Private to src/http.
#pragma once

#include <memory>
#include <utility>

#include "disco/detail/asio.h"

namespace disco::http::detail {

namespace asio = boost::asio;

class SuspendedCoroutine {
 public:
  virtual ~SuspendedCoroutine() = default;
  // Completes the coroutine's wait on its own executor (its I/O thread),
  // whatever thread calls this.
  virtual void Resume() = 0;
};

// The SuspendedCoroutine for an async_initiate completion handler. It
// counts as work of the coroutine's io_context, as a pending socket
// operation would: that run() waits for the resumption.
template <class Handler>
std::unique_ptr<SuspendedCoroutine> Suspend(Handler handler) {
  struct Waiter final : SuspendedCoroutine {
    explicit Waiter(Handler h)
        : handler(std::move(h)),
          work(asio::prefer(asio::get_associated_executor(handler),
                            asio::execution::outstanding_work.tracked)) {}
    void Resume() override {
      auto ex = asio::get_associated_executor(handler);
      asio::post(ex, std::move(handler));
    }
    Handler handler;
    decltype(asio::prefer(asio::get_associated_executor(std::declval<Handler&>()),
                          asio::execution::outstanding_work.tracked)) work;
  };
  return std::make_unique<Waiter>(std::move(handler));
}

}  // namespace disco::http::detail
