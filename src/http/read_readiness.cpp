#include "http/read_readiness.h"

#include <boost/version.hpp>
#include <sys/epoll.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <utility>

#if BOOST_VERSION == 107400 && defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IOCP)
#define DISCO_READ_READINESS 1
#else
#define DISCO_READ_READINESS 0
#endif

namespace disco::http::detail {

#if DISCO_READ_READINESS
namespace {

using asio::detail::epoll_reactor;
using State = epoll_reactor::descriptor_state;

// The explicit-instantiation rule ([temp.spec.general]: access is not
// checked in the arguments of an explicit instantiation) is the standard way
// to name a private member; the friend function carries the pointer out.
template <typename Tag, typename Tag::type Member>
struct Expose {
  friend typename Tag::type Get(Tag) { return Member; }
};

struct TrySpeculative {
  using type = bool (State::*)[epoll_reactor::max_ops];
  friend type Get(TrySpeculative);
};
struct Registered {
  using type = std::uint32_t State::*;
  friend type Get(Registered);
};
struct Queues {
  using type = asio::detail::op_queue<asio::detail::reactor_op> (State::*)[epoll_reactor::max_ops];
  friend type Get(Queues);
};
struct Lock {
  using type = asio::detail::conditionally_enabled_mutex State::*;
  friend type Get(Lock);
};
struct Reactor {
  using type = epoll_reactor* State::*;
  friend type Get(Reactor);
};
struct EpollFd {
  using type = int epoll_reactor::*;
  friend type Get(EpollFd);
};
template struct Expose<TrySpeculative, &State::try_speculative_>;
template struct Expose<Reactor, &State::reactor_>;
template struct Expose<EpollFd, &epoll_reactor::epoll_fd_>;
template struct Expose<Registered, &State::registered_events_>;
template struct Expose<Queues, &State::op_queue_>;
template struct Expose<Lock, &State::mutex_>;

// The socket's implementation is protected in basic_socket; a pointer to
// it, formed through a derived class, is not.
struct SocketAccess : Socket {
  static constexpr auto kImpl = &SocketAccess::impl_;
};

std::atomic<std::uint64_t> g_skipped{0};

// Swaps in `value` for the "try at once" flag of the socket's reads, under
// the descriptor's lock; what the flag was, or nullopt when a read is
// already waiting or cannot wait (not registered with epoll).
std::optional<bool> SwapTry(Socket& socket, bool value) {
  State* state = (socket.*SocketAccess::kImpl).get_implementation().reactor_data_;
  if (state == nullptr) return std::nullopt;
  std::lock_guard lock(state->*Get(Lock{}));
  if ((state->*Get(Registered{})) == 0 ||
      !(state->*Get(Queues{}))[epoll_reactor::read_op].empty())
    return std::nullopt;
  return std::exchange((state->*Get(TrySpeculative{}))[epoll_reactor::read_op], value);
}

}  // namespace

void MarkQuiet(Socket& socket) { SwapTry(socket, false); }

bool TakeQuiet(Socket& socket) { return SwapTry(socket, true) == false; }

bool SkipFirstReceive(Socket& socket) {
  if (!SwapTry(socket, false)) return false;
  g_skipped.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void WakeReader(Socket& socket) {
  State* state = (socket.*SocketAccess::kImpl).get_implementation().reactor_data_;
  if (state == nullptr) return;
  std::lock_guard lock(state->*Get(Lock{}));
  const std::uint32_t registered = state->*Get(Registered{});
  if (registered == 0) return;
  epoll_event event{};
  event.events = registered;
  event.data.ptr = state;
  // The registration as it is: the kernel looks at the descriptor again and
  // queues an event if it is ready. A failure (the descriptor closed) leaves
  // nothing to wake.
  ::epoll_ctl((state->*Get(Reactor{}))->*Get(EpollFd{}), EPOLL_CTL_MOD, socket.native_handle(),
              &event);
}

std::uint64_t SkippedFirstReceives() { return g_skipped.load(std::memory_order_relaxed); }

bool ReadReadinessKnown() { return true; }

#else

void MarkQuiet(Socket&) {}
bool TakeQuiet(Socket&) { return false; }
bool SkipFirstReceive(Socket&) { return false; }
void WakeReader(Socket&) {}
bool ReadReadinessKnown() { return false; }
std::uint64_t SkippedFirstReceives() { return 0; }

#endif

}  // namespace disco::http::detail
