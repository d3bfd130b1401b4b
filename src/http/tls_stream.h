// TlsStream: TLS over a connection's socket. Private to src/http.
//
// Why not asio::ssl::stream: it runs OpenSSL through a memory BIO pair, so
// every record is copied once more each way (socket → its buffer → the BIO
// pair → OpenSSL), each read and write is a composed operation of several
// steps through the scheduler, and each step brackets the OpenSSL call with
// error-queue and BIO-pair bookkeeping: with TLS on both sides, most of the
// gateway's user time above nginx's (docs/benchmarks.md, "TLS"). Here, as in
// nginx and HAProxy, OpenSSL writes to the socket itself (a BIO whose write
// is one non-blocking send), so a record the socket takes at once costs one
// system call and no asynchronous operation (WriteNow, as for plain HTTP);
// reads go through Asio's own socket read into a buffer OpenSSL reads from
// directly.
//
// Operations complete through the scheduler, never inside the call that
// starts them, as Asio's own do. Errors are Asio's: the socket's, OpenSSL's
// in asio::error::get_ssl_category() (its first error code, as
// asio::ssl::stream reports them), asio::error::eof after the peer's
// close_notify, asio::ssl::error::stream_truncated when the connection ended
// without one.
//
// Thread safety: none; a stream belongs to its connection's thread. The
// socket must be non-blocking (Connection makes it so) and outlive the
// stream; the context must outlive the stream.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <cstddef>
#include <memory>
#include <string>

#include <boost/asio/compose.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream_base.hpp>

#include "disco/detail/asio.h"
#include "disco/http/awaitable.h"

namespace disco::http::detail {

namespace asio = boost::asio;

using http::Executor;  // io_context's own (disco/http/awaitable.h)
using Socket = asio::basic_stream_socket<asio::ip::tcp, Executor>;

class TlsStream {
 public:
  using Role = asio::ssl::stream_base::handshake_type;  // client or server

  // Throws std::bad_alloc when OpenSSL cannot make the session object.
  TlsStream(Socket& socket, asio::ssl::context& context);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  SSL* native_handle() { return ssl_; }

  // Bytes already read from the socket (a server's look at the first bytes,
  // to tell TLS from plain HTTP): the handshake reads them first.
  void Preload(asio::const_buffer bytes);

  // Completion: void(boost::system::error_code).
  template <class Token>
  auto async_handshake(Role role, Token&& token) {
    if (role == Role::server)
      SSL_set_accept_state(ssl_);
    else
      SSL_set_connect_state(ssl_);
    return Run<void(boost::system::error_code)>(
        [this](boost::system::error_code& ec, std::size_t&) { return Handshake(ec); },
        std::forward<Token>(token), [](auto& self, boost::system::error_code ec, std::size_t) {
          self.complete(ec);
        });
  }

  // Completion: void(boost::system::error_code, std::size_t).
  template <class Token>
  auto async_read_some(asio::mutable_buffer buffer, Token&& token) {
    return Run<void(boost::system::error_code, std::size_t)>(
        [this, buffer](boost::system::error_code& ec, std::size_t& n) {
          return Read(buffer, n, ec);
        },
        std::forward<Token>(token), [](auto& self, boost::system::error_code ec, std::size_t n) {
          self.complete(ec, n);
        });
  }

  // Writes all of `buffers`. Completion: void(boost::system::error_code, std::size_t).
  template <class Token>
  auto async_write(std::array<asio::const_buffer, 2> buffers, Token&& token) {
    return Run<void(boost::system::error_code, std::size_t)>(
        [this, buffers, total = std::size_t{0}](boost::system::error_code& ec,
                                                std::size_t& n) mutable {
          const Step step = Write(buffers, total, ec);
          n = total;
          return step;
        },
        std::forward<Token>(token), [](auto& self, boost::system::error_code ec, std::size_t n) {
          self.complete(ec, n);
        });
  }
  template <class Token>
  auto async_write(asio::const_buffer buffer, Token&& token) {
    return async_write(std::array<asio::const_buffer, 2>{buffer, asio::const_buffer()},
                       std::forward<Token>(token));
  }

  // detail::WriteNow for TLS: encrypts and sends what the socket takes now.
  // True when everything was written or the write failed (`ec` set); false
  // when the socket's send buffer was full, with `buffers` advanced past what
  // was written. The rest must then go through async_write with the same
  // `buffers` (OpenSSL retries a record it began with the same bytes).
  bool WriteNow(std::array<asio::const_buffer, 2>& buffers, boost::system::error_code& ec);

 private:
  // What an OpenSSL call left to do.
  enum class Step { kDone, kNeedInput, kNeedOutput };

  template <class Attempt, class Complete>
  struct Op {
    TlsStream& tls;
    Attempt attempt;
    Complete finish;
    enum class State { kStart, kReading, kWaiting, kPosted } state = State::kStart;
    boost::system::error_code result{};
    std::size_t n = 0;

    template <class Self>
    void operator()(Self& self, boost::system::error_code ec = {}, std::size_t got = 0) {
      switch (state) {
        case State::kStart: break;
        case State::kReading:
          if (ec == asio::error::eof) {
            tls.InputEnded();  // OpenSSL tells a close_notify'd end from a truncated one
          } else if (ec) {
            tls.Abandoned();
            return finish(self, ec, 0);
          } else {
            tls.CommitInput(got);
          }
          break;
        case State::kWaiting:
          if (ec) {
            tls.Abandoned();
            return finish(self, ec, 0);
          }
          break;
        case State::kPosted: return finish(self, result, n);
      }
      const bool first = state == State::kStart;
      switch (attempt(result, n)) {
        case Step::kNeedInput:
          state = State::kReading;
          return tls.socket_.async_read_some(tls.InputSpace(), std::move(self));
        case Step::kNeedOutput:
          state = State::kWaiting;
          return tls.socket_.async_wait(Socket::wait_write, std::move(self));
        case Step::kDone:
          if (!first) return finish(self, result, n);
          // Done without waiting: complete through the scheduler, as a
          // zero-byte read on a stream socket does at once (Asio's own trick).
          state = State::kPosted;
          return tls.socket_.async_read_some(asio::mutable_buffer(), std::move(self));
      }
    }
  };

  template <class Signature, class Attempt, class Token, class Complete>
  auto Run(Attempt attempt, Token&& token, Complete finish) {
    return asio::async_compose<Token, Signature>(
        Op<Attempt, Complete>{*this, std::move(attempt), std::move(finish)}, token, socket_);
  }

  Step Handshake(boost::system::error_code& ec);
  Step Read(asio::mutable_buffer out, std::size_t& n, boost::system::error_code& ec);
  // Advances `buffers` past what was written and adds it to `total`.
  Step Write(std::array<asio::const_buffer, 2>& buffers, std::size_t& total,
             boost::system::error_code& ec);
  // The outcome of an OpenSSL call that returned `ok`.
  Step Outcome(int ok, boost::system::error_code& ec);

  asio::mutable_buffer InputSpace();
  void CommitInput(std::size_t n) { in_end_ += n; }
  void InputEnded() { in_ended_ = true; }
  // An operation ended on a socket error, a deadline or a cancellation. A
  // record OpenSSL had begun to send can then never be finished with the
  // same bytes: later writes fail rather than send the rest of it in front
  // of something else (a 408 after a timed-out 100 Continue).
  void Abandoned() {
    if (write_waiting_) write_broken_ = true;
  }

  friend struct TlsStreamBio;

  Socket& socket_;
  SSL* ssl_ = nullptr;
  // Records read from the socket and not yet taken by OpenSSL: in_[in_begin_, in_end_).
  std::unique_ptr<char[]> in_;
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;
  bool in_ended_ = false;  // the socket read its end
  int send_errno_ = 0;     // of the last send that failed, during the current call
  bool write_waiting_ = false;  // a write began and waits for the socket
  bool write_broken_ = false;   // see Abandoned()
  // A small head and body are written as one record, from here; kept while
  // that write waits for the socket (OpenSSL retries it with the same bytes).
  std::string joined_;
  bool joining_ = false;
};

}  // namespace disco::http::detail
