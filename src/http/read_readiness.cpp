#include "http/read_readiness.h"

#include <boost/version.hpp>

#include <mutex>

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
template struct Expose<TrySpeculative, &State::try_speculative_>;
template struct Expose<Registered, &State::registered_events_>;
template struct Expose<Queues, &State::op_queue_>;
template struct Expose<Lock, &State::mutex_>;

// The socket's implementation is protected in basic_socket; a pointer to
// it, formed through a derived class, is not.
struct SocketAccess : Socket {
  static constexpr auto kImpl = &SocketAccess::impl_;
};

}  // namespace

bool SkipFirstReceive(Socket& socket) {
  State* state = (socket.*SocketAccess::kImpl).get_implementation().reactor_data_;
  if (state == nullptr) return false;
  std::lock_guard lock(state->*Get(Lock{}));
  // Not registered with epoll (then a read must try at once), or a read
  // already waiting (then this one is not the first).
  if ((state->*Get(Registered{})) == 0 || !(state->*Get(Queues{}))[epoll_reactor::read_op].empty())
    return false;
  (state->*Get(TrySpeculative{}))[epoll_reactor::read_op] = false;
  return true;
}

#else

bool SkipFirstReceive(Socket&) { return false; }

#endif

}  // namespace disco::http::detail
