// DrainedRead: a plain socket's async_read_some that knows when its recv
// drained the socket, so that the next read waits for epoll instead of
// trying first. Private to src/http.
//
// Why: Asio 1.74 starts every read with a speculative recv once the socket
// has ever been readable (it stops only at end of stream). On a connection
// that asks and then waits for the answer that recv almost always fails:
// the answer cannot be there microseconds after the question. Counted under
// load, 2 of a proxied request's 4 receives failed with EAGAIN, a system
// call each for nothing (docs/benchmarks.md, "Sends in batches"; strace
// hid it, being slow enough for the peer to answer in time). nginx, and
// later Asio versions for a zero-byte read, take a recv that returned less
// than it asked for as having drained the socket: this read does the same.
//
// Why it cannot miss data: the reactor clears its "try speculatively" flag
// in the same step, under the same lock, as the recv that drained the
// socket, and sets it again on every EPOLLIN edge, each of which a new
// arrival raises (the socket is registered edge-triggered). Bytes that come
// after the recv raise an edge that the next epoll_wait reports, and the
// next read then tries at once, as before.
//
// It builds Asio's own reactor operation (the one async_read_some builds,
// with that one difference), so it depends on Asio's internals: only for the
// Boost version these were read from (Debian 12's 1.74) with the epoll
// reactor; anywhere else ReadSome is plain async_read_some.
#pragma once

#include <boost/version.hpp>

#include <cstddef>
#include <utility>

#include "disco/detail/asio.h"
#include "disco/http/awaitable.h"

#if BOOST_VERSION == 107400 && defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING)
#define DISCO_DRAINED_READ 1
#else
#define DISCO_DRAINED_READ 0
#endif

namespace disco::http::detail {

namespace asio = boost::asio;
using Socket = asio::basic_stream_socket<asio::ip::tcp, Executor>;

#if DISCO_DRAINED_READ

namespace asio_detail = boost::asio::detail;

// The socket's reactor and per-descriptor state, which Asio keeps
// protected: a pointer to member named through a derived class may be
// applied to the base (the standard way to reach a protected member).
struct SocketInternals : Socket {
  static auto& Implementation(Socket& socket) {
    return (socket.*(&SocketInternals::impl_)).get_implementation();
  }
};

template <class Handler>
class DrainedRecvOp : public asio_detail::reactor_op {
 public:
  BOOST_ASIO_DEFINE_HANDLER_PTR(DrainedRecvOp);

  DrainedRecvOp(asio_detail::socket_type socket, asio::mutable_buffer buffer, Handler& handler,
                const Executor& io_ex)
      : asio_detail::reactor_op(boost::system::error_code(), &DrainedRecvOp::DoPerform,
                                &DrainedRecvOp::DoComplete),
        socket_(socket),
        buffer_(buffer),
        handler_(std::move(handler)),
        work_(handler_, io_ex) {}

  static status DoPerform(asio_detail::reactor_op* base) {
    auto* op = static_cast<DrainedRecvOp*>(base);
    if (!asio_detail::socket_ops::non_blocking_recv1(op->socket_, op->buffer_.data(),
                                                     op->buffer_.size(), 0, true, op->ec_,
                                                     op->bytes_transferred_))
      return not_done;
    // The only change from Asio's: less than asked for (an end of stream,
    // an error, or simply all there was) is drained.
    return op->bytes_transferred_ < op->buffer_.size() ? done_and_exhausted : done;
  }

  // As Asio's reactive_socket_recv_op::do_complete.
  static void DoComplete(void* owner, asio_detail::operation* base,
                         const boost::system::error_code&, std::size_t) {
    auto* op = static_cast<DrainedRecvOp*>(base);
    ptr p = {asio_detail::addressof(op->handler_), op, op};
    asio_detail::handler_work<Handler, Executor> work(std::move(op->work_));
    // A local copy: the handler may own the memory the operation lives in.
    asio_detail::binder2<Handler, boost::system::error_code, std::size_t> handler(
        op->handler_, op->ec_, op->bytes_transferred_);
    p.h = asio_detail::addressof(handler.handler_);
    p.reset();
    if (owner) {
      asio_detail::fenced_block b(asio_detail::fenced_block::half);
      work.complete(handler, handler.handler_);
    }
  }

 private:
  asio_detail::socket_type socket_;
  asio::mutable_buffer buffer_;
  Handler handler_;
  asio_detail::handler_work<Handler, Executor> work_;
};

// async_read_some on `socket` (non-blocking, plain), whose io_context's
// reactor is `reactor`, with the drained rule above. A zero-byte read is
// Asio's own (it completes at once).
template <class Token>
auto ReadSome(Socket& socket, asio_detail::reactor& reactor, asio::mutable_buffer buffer,
              Token&& token) {
  return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
      [&socket, &reactor, buffer](auto handler) {
        if (buffer.size() == 0) {
          socket.async_read_some(buffer, std::move(handler));
          return;
        }
        using Op = DrainedRecvOp<decltype(handler)>;
        const bool is_continuation = boost_asio_handler_cont_helpers::is_continuation(handler);
        auto& impl = SocketInternals::Implementation(socket);
        typename Op::ptr p = {asio_detail::addressof(handler), Op::ptr::allocate(handler), nullptr};
        p.p = new (p.v) Op(impl.socket_, buffer, handler, socket.get_executor());
        reactor.start_op(asio_detail::reactor::read_op, impl.socket_, impl.reactor_data_, p.p,
                         is_continuation, true);
        p.v = p.p = nullptr;
      },
      token);
}

#endif  // DISCO_DRAINED_READ

}  // namespace disco::http::detail
