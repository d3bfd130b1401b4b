// Connection: one TCP connection of the HTTP layer (a server session, or a
// pooled connection of http::Client) with its read buffer and one deadline,
// plus the read loop both sides use. Private to src/http.
//
// Why not beast::tcp_stream: it arms and cancels a timer around every read
// and write, two timer-queue operations and one more handler per socket
// operation. Here one timer serves every deadline of the connection:
// SetDeadline() only stores the time, and touches the timer only when the
// new deadline is earlier than the timer's expiry (rare: deadlines mostly
// move forward); when the timer fires before the deadline it re-arms for it.
// When a deadline passes the socket is closed, so the pending operation
// fails, and timed_out() tells the caller why. A server session asks for
// its operations to be cancelled instead (CancelOnTimeout), so that it can
// still answer 408 before it closes.
//
// The read buffer is bounded (max_buffered): Beast's parser consumes body
// bytes as they arrive, but a chunk-size line, its extensions or a trailer
// section stay buffered until their line ends, and a peer that never ends
// one would otherwise grow the buffer without limit.
//
// The socket and the timer use io_context's concrete executor instead of
// any_io_executor, so operations on them do not go through a type-erased
// executor (servers and clients only ever run on io_contexts).
//
// Thread safety: none. A connection belongs to the io_context thread that
// made it. Owned by shared_ptr: a pending timer wait holds a reference.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "disco/detail/asio.h"
#include "disco/http/awaitable.h"
#include "http/suspended_coroutine.h"
#include "http/tls_stream.h"

namespace disco::http::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

using Clock = std::chrono::steady_clock;

// A Beast parser that appends the body, plain or chunked, to `body`; the
// subclass takes the start line (on_request_impl or on_response_impl) and
// the fields. Beast declares both start-line callbacks for either
// direction, so the one a direction never calls is a no-op here.
template <bool isRequest>
class BodyParser : public bhttp::basic_parser<isRequest> {
 protected:
  explicit BodyParser(std::string& body) : body_(body) {}
  // Protected: a request parser that refuses a head checks here too (Beast
  // goes on past an error from on_header_impl when more bytes follow).
  void on_body_init_impl(const boost::optional<std::uint64_t>& length,
                         beast::error_code& ec) override {
    // Up to 64 KiB ahead: a declared Content-Length is a claim, not bytes,
    // and a client declaring 1 MiB on many connections and sending nothing
    // would otherwise reserve (address space) for all of it.
    if (length) body_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(*length, 64 * 1024)));
    ec = {};
  }

  void on_request_impl(bhttp::verb, beast::string_view, beast::string_view, int,
                       beast::error_code& ec) override {
    ec = {};
  }
  void on_response_impl(int, beast::string_view, int, beast::error_code& ec) override { ec = {}; }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code& ec) override {
    ec = {};
  }

  // Protected: the server's request parser counts body bytes (BodyBudget).
  std::size_t on_body_impl(beast::string_view body, beast::error_code& ec) override {
    body_.append(body.data(), body.size());
    ec = {};
    return body.size();
  }

  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body,
                                 beast::error_code& ec) override {
    return on_body_impl(body, ec);
  }

 private:
  void on_finish_impl(beast::error_code& ec) override { ec = {}; }

  std::string& body_;
};

class SendBatch;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  static constexpr Clock::time_point kNever = Clock::time_point::max();

  explicit Connection(Socket socket);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Socket& socket() { return socket_; }
  beast::flat_buffer& buffer() { return buffer_; }

  // Puts TLS with `context` (kept alive by the connection, so a reload of
  // the settings does not touch open connections) over the socket; the
  // handshake is the caller's. From then on every read and write goes
  // through TLS (AsyncReadSome, AsyncWrite, WriteNow).
  TlsStream& StartTls(std::shared_ptr<asio::ssl::context> context);
  TlsStream* tls() { return tls_.get(); }

  // The socket's operations, through TLS when it is on. (One branch: both
  // arms return the same awaitable type for the same completion token.)
  template <class MutableBuffer, class Token>
  auto AsyncReadSome(const MutableBuffer& buffer, Token&& token) {
    if (tls_) return tls_->async_read_some(buffer, std::forward<Token>(token));
    return socket_.async_read_some(buffer, std::forward<Token>(token));
  }
  template <class ConstBuffers, class Token>
  auto AsyncWrite(const ConstBuffers& buffers, Token&& token) {
    if (tls_) return tls_->async_write(buffers, std::forward<Token>(token));
    return asio::async_write(socket_, buffers, std::forward<Token>(token));
  }

  // Operations still pending at `deadline` fail (the socket is closed);
  // kNever: no deadline. A deadline in the past closes the socket at once.
  void SetDeadline(Clock::time_point deadline);
  // No deadline, and no timer wait either: for a connection parked in a
  // pool, which must not keep its io_context's run() from returning.
  void ClearDeadline();
  // The socket was closed (or, after CancelOnTimeout, its operations
  // cancelled) because a deadline passed.
  bool timed_out() const { return timed_out_; }
  // From now on a passed deadline cancels the pending operations and leaves
  // the socket open (the owner closes it).
  void CancelOnTimeout() { close_on_timeout_ = false; }

  // ReadMore() fails with bhttp::error::buffer_overflow (before the header
  // is complete: header_limit) rather than buffer more unparsed bytes.
  std::size_t max_buffered() const { return max_buffered_; }
  void set_max_buffered(std::size_t bytes) { max_buffered_ = bytes; }
  // Gives a grown read buffer back when it is empty (after a large message).
  void ShrinkBuffer();

  // Bytes written through the send batch have not all left yet: queued for
  // the next flush, or the rest of a send the socket took only in part being
  // written. Such a connection is not idle (nothing to evict or cancel).
  bool sending() const { return outbox_ != Outbox::kEmpty; }
  // The rest of a partial batched send is being written.
  bool tail_pending() const { return outbox_ == Outbox::kTail; }
  // A batched send failed: the connection cannot be written to (nor reused).
  bool write_failed() const { return static_cast<bool>(write_error_); }
  // How long the rest of a partial batched send may take: while it is being
  // written the deadline is at most this far away (a server's
  // request_timeout, so that a client reading slowly is cut off as when its
  // answer's write was awaited). Zero: the deadline as it is.
  void set_write_timeout(std::chrono::milliseconds timeout) { write_timeout_ = timeout; }

  // For a read that follows bytes still queued in the send batch, as a
  // server's read of the next request after its answer: the read skips its
  // first recv(), which cannot find the next request before the client has
  // the answer, and the batch peeks after the send instead, waking the read
  // if something is there already (send_batch.h). Call just before the
  // read; does nothing when the bytes have left, for TLS, or where
  // read_readiness.h does not know the reactor.
  void SkipReceiveUntilSent();

  // Cancels the timer and closes the socket (idempotent). Bytes waiting in
  // the send batch go out first.
  void Close();
  // Shuts both directions down, after the bytes waiting in the send batch.
  void Shutdown();

 private:
  friend class SendBatch;
  friend bool WriteNow(Connection&, std::array<asio::const_buffer, 2>&, boost::system::error_code&);
  friend bool WriteSoon(Connection&, std::array<asio::const_buffer, 2>&,
                        boost::system::error_code&);
  friend Awaitable<void> WriteRest(Connection&, std::array<asio::const_buffer, 2>&,
                                   boost::system::error_code&);
  friend Awaitable<void> FinishWrites(Connection&, boost::system::error_code&);

  void Arm(Clock::time_point at);
  void OnTimer(std::uint64_t generation, const boost::system::error_code& ec);

  // Where the connection's writes through the send batch stand: none
  // pending; bytes queued for the next flush; the rest of a send the socket
  // took only in part being written asynchronously (tail_).
  enum class Outbox : std::uint8_t { kEmpty, kQueued, kTail };
  // Sends what the batch holds for this connection now (Outbox::kQueued).
  void FlushOutbox();
  // From the batch: `rest` did not fit the socket; write it asynchronously.
  void WriteTail(std::string_view rest);
  // From the batch or the tail: a send failed. Later writes fail with `ec`,
  // and the socket is shut down so that a pending read ends too.
  void FailWrites(const boost::system::error_code& ec);
  // Completes when the tail is written or has failed.
  template <class Token>
  auto AwaitTail(Token&& token) {
    return asio::async_initiate<Token, void()>(
        [this](auto handler) { tail_waiter_ = Suspend(std::move(handler)); }, token);
  }

  Socket socket_;
  // After socket_: destroyed before the socket it refers to.
  std::shared_ptr<asio::ssl::context> tls_context_;
  std::unique_ptr<TlsStream> tls_;
  asio::basic_waitable_timer<Clock, asio::wait_traits<Clock>, Executor> timer_;
  beast::flat_buffer buffer_;
  Clock::time_point deadline_ = kNever;
  Clock::time_point expiry_ = kNever;  // of the pending wait, if armed_
  std::uint64_t generation_ = 0;       // which wait is the current one
  std::size_t max_buffered_ = 64 * 1024;
  bool armed_ = false;
  bool timed_out_ = false;
  bool close_on_timeout_ = true;
  Outbox outbox_ = Outbox::kEmpty;
  std::size_t outbox_slot_ = 0;  // the batch's entry, while kQueued
  SendBatch* batch_;             // the socket's io_context's
  std::string tail_;
  std::unique_ptr<SuspendedCoroutine> tail_waiter_;
  std::chrono::milliseconds write_timeout_{0};
  Clock::time_point tail_deadline_{};   // set by WriteTail from write_timeout_
  Clock::time_point saved_deadline_{};  // the deadline before it, restored after
  boost::system::error_code write_error_;  // a batched send failed
};

// How far Read() goes.
enum class ReadUntil { kHeader, kMessage };

// Feeds `parser` from the connection's buffer, reading from the socket as
// needed, until the parser has the whole header or the whole message. On
// return the buffer holds what follows (pipelined bytes). `ec`:
// beast::error::timeout when the deadline passed; bhttp::error::end_of_stream
// when the peer closed before sending any byte of this message; the
// parser's errors (header_limit, body_limit, bad syntax);
// bhttp::error::header_limit or buffer_overflow when more than
// connection.max_buffered() bytes would wait unparsed; socket errors.
// One loop, no composed operation.
//
// In two steps, so that a message already in the buffer costs no coroutine
// frame (a server reads a whole small request with its first read, and a
// client's answer body usually comes with its header):
//
//   if (!ParseBuffered(connection, parser, until, ec))
//     co_await ReadMore(connection, parser, until, ec);
//
// ParseBuffered() parses what the buffer holds: true when done (or failed,
// `ec` set), false when it needs bytes from the socket. ReadMore() must only
// follow a false from ParseBuffered().
template <bool kIsRequest>
bool ParseBuffered(Connection& connection, bhttp::basic_parser<kIsRequest>& parser, ReadUntil until,
                   boost::system::error_code& ec);

template <bool kIsRequest>
Awaitable<void> ReadMore(Connection& connection, bhttp::basic_parser<kIsRequest>& parser,
                         ReadUntil until, boost::system::error_code& ec);

extern template bool ParseBuffered<true>(Connection&, bhttp::basic_parser<true>&, ReadUntil,
                                         boost::system::error_code&);
extern template bool ParseBuffered<false>(Connection&, bhttp::basic_parser<false>&, ReadUntil,
                                          boost::system::error_code&);
extern template Awaitable<void> ReadMore<true>(Connection&, bhttp::basic_parser<true>&, ReadUntil,
                                               boost::system::error_code&);
extern template Awaitable<void> ReadMore<false>(Connection&, bhttp::basic_parser<false>&, ReadUntil,
                                                boost::system::error_code&);

// How much to read at once into `buffer`: room for at least 4 KiB (a
// typical request or small answer in one read), at most 64 KiB, as Beast's
// own read loop does.
std::size_t ReadSize(const beast::flat_buffer& buffer);
// After a read from `connection` failed with `ec` before any byte of a
// message: the error to report (end_of_stream for a closed connection, a
// TLS one ended without close_notify too; timeout when the deadline closed
// the socket). ReadMore() uses it too.
void TranslateReadError(const Connection& connection, boost::system::error_code& ec);

// Writes what the socket takes right now, without waiting: one
// non-blocking sendmsg (through TLS: TlsStream::WriteNow, a record's send),
// after whatever the send batch still holds for the connection. True when
// everything was written or the write failed (`ec` set); false when the
// kernel's send buffer was full, with `buffers` advanced past what was
// written, or an earlier batched send is still being finished. In two steps
// like reading:
//
//   if (!WriteNow(connection, buffers, ec))
//     co_await WriteRest(connection, buffers, ec);
//
// Every write on a connection goes through these (or WriteSoon), so that
// bytes leave in the order they were written.
//
// Why: a small message almost always fits the send buffer at once, and
// then it costs one system call and no asynchronous operation (Asio's own
// speculative write makes the same call, but still completes through the
// scheduler and resumes the coroutine: about a quarter of the I/O cost of a
// proxied request).
bool WriteNow(Connection& connection, std::array<asio::const_buffer, 2>& buffers,
              boost::system::error_code& ec);

// As WriteNow, but a plain message of up to SendBatch::kMaxBytes joins the
// io_context's send batch instead (send_batch.h): it is copied, and goes out
// with the others before the thread next waits for events, in order with
// the connection's other writes and before it closes. For a write the caller
// does not wait on, as an answer followed by a read. True: taken (`ec` from
// an earlier batched send that failed, if any).
bool WriteSoon(Connection& connection, std::array<asio::const_buffer, 2>& buffers,
               boost::system::error_code& ec);

// What WriteNow or WriteSoon left: waits for an earlier batched send to be
// finished, then writes `buffers` (asynchronously, within the connection's
// deadline).
Awaitable<void> WriteRest(Connection& connection, std::array<asio::const_buffer, 2>& buffers,
                          boost::system::error_code& ec);

// Before a connection is shut down or let go: sends what the batch holds for
// it and waits, within the connection's deadline, until the rest of a partial
// send is written (`ec` when it failed). Close() and Shutdown() only flush:
// what the socket does not take then would be lost.
Awaitable<void> FinishWrites(Connection& connection, boost::system::error_code& ec);

// True when `text` holds a CR or LF (header injection).
bool HasLineBreak(std::string_view text);
// How many bytes of `text` are CR or LF.
std::size_t CountLineBreakBytes(std::string_view text);

// NewRequestId() into `out`, reusing its buffer (servers do it per request).
void NewRequestIdInto(std::string& out);

}  // namespace disco::http::detail
