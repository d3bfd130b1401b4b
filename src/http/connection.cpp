#include "http/connection.h"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <boost/asio/ssl/error.hpp>

#include "http/cpu_limit.h"
#include "http/read_readiness.h"
#include "http/send_batch.h"

namespace disco::http::detail {

Connection::Connection(Socket socket)
    : socket_(std::move(socket)),
      timer_(socket_.get_executor()),
      batch_(&asio::use_service<SendBatch>(socket_.get_executor().context())) {
  // WriteNow() relies on it; asynchronous operations are unaffected.
  boost::system::error_code ignored;
  socket_.non_blocking(true, ignored);
}

TlsStream& Connection::StartTls(std::shared_ptr<asio::ssl::context> context) {
  tls_context_ = std::move(context);
  tls_ = std::make_unique<TlsStream>(socket_, *tls_context_);
  return *tls_;
}

void Connection::SetDeadline(Clock::time_point deadline) {
  deadline_ = deadline;
  // A later deadline needs nothing: the pending wait fires early and re-arms.
  if (deadline != kNever && (!armed_ || deadline < expiry_)) Arm(deadline);
}

void Connection::ClearDeadline() {
  deadline_ = kNever;
  if (armed_) {
    armed_ = false;
    ++generation_;
    timer_.cancel();
  }
}

void Connection::Close() {
  FlushOutbox();
  ClearDeadline();
  boost::system::error_code ignored;
  socket_.close(ignored);
}

void Connection::Shutdown() {
  FlushOutbox();
  boost::system::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
}

void Connection::SkipReceiveUntilSent() {
  if (tls_ || !batch_->CanPeekAfterSend(*this)) return;
  if (SkipFirstReceive(socket_)) batch_->PeekAfterSend(*this);
}

void Connection::FlushOutbox() {
  if (outbox_ == Outbox::kQueued) batch_->Flush();
}

void Connection::WriteTail(std::string_view rest) {
  tail_.assign(rest);
  outbox_ = Outbox::kTail;
  tail_deadline_ = Clock::time_point{};
  if (write_timeout_.count() > 0) {
    const auto by = Clock::now() + write_timeout_;
    if (by < deadline_) {
      saved_deadline_ = deadline_;
      tail_deadline_ = by;
      SetDeadline(by);
    }
  }
  asio::async_write(socket_, asio::buffer(tail_),
                    [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                      self->outbox_ = Outbox::kEmpty;
                      std::string().swap(self->tail_);
                      // The owner's deadline again, unless it set another meanwhile.
                      if (self->tail_deadline_ != Clock::time_point{} &&
                          self->deadline_ == self->tail_deadline_ && !self->timed_out_)
                        self->SetDeadline(self->saved_deadline_);
                      if (ec) self->FailWrites(ec);
                      if (self->tail_waiter_) std::exchange(self->tail_waiter_, nullptr)->Resume();
                    });
}

void Connection::FailWrites(const boost::system::error_code& ec) {
  if (!write_error_) write_error_ = ec;
  boost::system::error_code ignored;
  socket_.shutdown(asio::socket_base::shutdown_both, ignored);
}

void Connection::Arm(Clock::time_point at) {
  expiry_ = at;
  armed_ = true;
  const std::uint64_t generation = ++generation_;
  timer_.expires_at(at);  // cancels the pending wait, if any: it sees a stale generation
  timer_.async_wait([self = shared_from_this(), generation](const boost::system::error_code& ec) {
    self->OnTimer(generation, ec);
  });
}

void Connection::OnTimer(std::uint64_t generation, const boost::system::error_code& ec) {
  if (generation != generation_) return;  // re-armed or closed since
  armed_ = false;
  if (ec || deadline_ == kNever) return;
  if (Clock::now() < deadline_) {
    Arm(deadline_);
    return;
  }
  timed_out_ = true;
  FlushOutbox();  // never close a descriptor the batch still means to send on
  boost::system::error_code ignored;
  // The pending operation completes with an error.
  if (close_on_timeout_)
    socket_.close(ignored);
  else
    socket_.cancel(ignored);
}

void Connection::ShrinkBuffer() {
  // Above this a buffer was grown by an unusual message: keep the usual size.
  constexpr std::size_t kKeep = 64 * 1024;
  if (buffer_.size() == 0 && buffer_.capacity() > kKeep) buffer_.shrink_to_fit();
}

template <bool kIsRequest>
bool ParseBuffered(Connection& connection, bhttp::basic_parser<kIsRequest>& parser, ReadUntil until,
                   boost::system::error_code& ec) {
  ec = {};
  parser.eager(true);
  auto& buffer = connection.buffer();
  for (;;) {
    if (until == ReadUntil::kHeader ? parser.is_header_done() : parser.is_done()) return true;
    if (buffer.size() == 0) return false;
    const std::size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec != bhttp::error::need_more) {
      if (ec) return true;
      if (used > 0) continue;
    }
    ec = {};
    return false;
  }
}

std::size_t ReadSize(const beast::flat_buffer& buffer) {
  return std::clamp<std::size_t>(buffer.capacity() - buffer.size(), 4096, 65536);
}

void TranslateReadError(const Connection& connection, boost::system::error_code& ec) {
  // A TLS peer that ended the connection without a close_notify (a process
  // killed, a proxy's idle close) closed it all the same. (Only where no
  // message is taken as whole by the end: ReadMore ends one at a plain EOF only.)
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated)
    ec = bhttp::error::end_of_stream;
  else if (ec && connection.timed_out())
    ec = beast::error::timeout;
}

template <bool kIsRequest>
Awaitable<void> ReadMore(Connection& connection, bhttp::basic_parser<kIsRequest>& parser,
                         ReadUntil until, boost::system::error_code& ec) {
  auto& buffer = connection.buffer();
  do {
    // What waits unparsed here is a head, a chunk-size line or a trailer
    // section not yet ended (body bytes are consumed as they arrive).
    if (buffer.size() >= connection.max_buffered()) {
      ec = parser.is_header_done() ? bhttp::error::buffer_overflow : bhttp::error::header_limit;
      co_return;
    }
    const std::size_t n = co_await connection.AsyncReadSome(
        buffer.prepare(ReadSize(buffer)), asio::redirect_error(http::use_awaitable, ec));
    buffer.commit(n);
    if (ec == asio::error::eof && parser.got_some()) {
      // A response delimited by the end of the connection ends here; a
      // truncated message is partial_message.
      ec = {};
      parser.put_eof(ec);
      co_return;
    }
    if (ec) {
      TranslateReadError(connection, ec);
      co_return;
    }
  } while (!ParseBuffered(connection, parser, until, ec));
}

bool WriteNow(Connection& connection, std::array<asio::const_buffer, 2>& buffers,
              boost::system::error_code& ec) {
  ec = {};
  connection.FlushOutbox();  // what was written before leaves before
  if (connection.write_error_) {
    ec = connection.write_error_;
    return true;
  }
  if (connection.outbox_ == Connection::Outbox::kTail) return false;
  if (buffers[0].size() + buffers[1].size() == 0) return true;
  if (connection.tls() != nullptr) {
    const bool done = connection.tls()->WriteNow(buffers, ec);
    CpuLimitCheckpoint();  // after a send made at once, as after a flush (cpu_limit.h)
    return done;
  }
  // A blocking write would stall the thread.
  if (!connection.socket().non_blocking()) return false;
  // sendmsg through syscall(), not glibc's wrapper: the wrapper is a thread
  // cancellation point, and in a multi-threaded process it brackets every
  // call with two atomic updates of the thread's cancellation state
  // (nothing here is ever cancelled). MSG_NOSIGNAL as Asio sends. (The
  // sanitizers do not see this call: the buffers are the caller's, checked
  // where they are built.)
  iovec iov[2] = {{const_cast<void*>(buffers[0].data()), buffers[0].size()},
                  {const_cast<void*>(buffers[1].data()), buffers[1].size()}};
  msghdr message{};
  message.msg_iov = iov;
  message.msg_iovlen = 2;
  long sent;
  do {
#if defined(SYS_sendmsg)
    sent = ::syscall(SYS_sendmsg, connection.socket().native_handle(), &message, MSG_NOSIGNAL);
#else  // ABIs without a sendmsg system call of its own (socketcall)
    sent = ::sendmsg(connection.socket().native_handle(), &message, MSG_NOSIGNAL);
#endif
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
    ec.assign(errno, boost::asio::error::get_system_category());
    return true;
  }
  CpuLimitCheckpoint();  // after a send made at once, as after a flush (cpu_limit.h)
  const auto n = static_cast<std::size_t>(sent);
  const std::size_t first = std::min(n, buffers[0].size());
  buffers[0] += first;
  buffers[1] += n - first;
  return buffers[0].size() + buffers[1].size() == 0;
}

bool WriteSoon(Connection& connection, std::array<asio::const_buffer, 2>& buffers,
               boost::system::error_code& ec) {
  ec = {};
  // Anything but a plain connection free to queue goes through WriteNow,
  // which also reports an earlier failed send.
  if (!connection.write_error_ && connection.tls() == nullptr &&
      connection.outbox_ != Connection::Outbox::kTail &&
      connection.batch_->Queue(
          connection,
          std::string_view(static_cast<const char*>(buffers[0].data()), buffers[0].size()),
          std::string_view(static_cast<const char*>(buffers[1].data()), buffers[1].size()))) {
    buffers[0] += buffers[0].size();
    buffers[1] += buffers[1].size();
    return true;
  }
  return WriteNow(connection, buffers, ec);
}

Awaitable<void> FinishWrites(Connection& connection, boost::system::error_code& ec) {
  connection.FlushOutbox();
  if (connection.outbox_ == Connection::Outbox::kTail)
    co_await connection.AwaitTail(http::use_awaitable);
  ec = connection.write_error_;
}

Awaitable<void> WriteRest(Connection& connection, std::array<asio::const_buffer, 2>& buffers,
                          boost::system::error_code& ec) {
  co_await FinishWrites(connection, ec);
  if (!ec) co_await connection.AsyncWrite(buffers, asio::redirect_error(http::use_awaitable, ec));
}

template bool ParseBuffered<true>(Connection&, bhttp::basic_parser<true>&, ReadUntil,
                                  boost::system::error_code&);
template bool ParseBuffered<false>(Connection&, bhttp::basic_parser<false>&, ReadUntil,
                                   boost::system::error_code&);
template Awaitable<void> ReadMore<true>(Connection&, bhttp::basic_parser<true>&, ReadUntil,
                                        boost::system::error_code&);
template Awaitable<void> ReadMore<false>(Connection&, bhttp::basic_parser<false>&, ReadUntil,
                                         boost::system::error_code&);

bool HasLineBreak(std::string_view text) {
  // Eight bytes at a time (a word has a CR or LF iff `word ^ CRs` or
  // `word ^ LFs` has a zero byte): header names and values are short, and
  // two memchr calls per string cost more than the whole scan. Runs over
  // every header name and value written.
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
  auto has_zero_byte = [](std::uint64_t v) { return ((v - kOnes) & ~v & kHigh) != 0; };
  auto has_break = [&](const char* p) {
    std::uint64_t word;
    std::memcpy(&word, p, sizeof word);
    return has_zero_byte(word ^ (kOnes * '\r')) || has_zero_byte(word ^ (kOnes * '\n'));
  };
  const char* data = text.data();
  const std::size_t n = text.size();
#if defined(__SSE2__)
  // Sixteen bytes at a time where there are as many (request ids, addresses).
  if (n >= 16) {
    const __m128i cr = _mm_set1_epi8('\r');
    const __m128i lf = _mm_set1_epi8('\n');
    auto has_break16 = [&](const char* p) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      return _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf))) != 0;
    };
    for (std::size_t i = 0; i + 16 <= n; i += 16) {
      if (has_break16(data + i)) return true;
    }
    return n % 16 != 0 && has_break16(data + n - 16);
  }
#endif
  if (n < 8) {
    for (std::size_t i = 0; i < n; ++i) {
      if (data[i] == '\r' || data[i] == '\n') return true;
    }
    return false;
  }
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    if (has_break(data + i)) return true;
  }
  // The last word overlaps the previous one when n is not a multiple of 8.
  return n % 8 != 0 && has_break(data + n - 8);
}

std::size_t CountLineBreakBytes(std::string_view text) {
  const char* data = text.data();
  const std::size_t n = text.size();
  std::size_t count = 0, i = 0;
#if defined(__SSE2__)
  if (n >= 16) {
    // Per-byte counters (a match compares as -1, subtracted), summed with
    // psadbw every 255 blocks, before a counter could wrap: five
    // instructions a block, where a popcount per block is a libgcc call
    // (no -mpopcnt).
    const __m128i cr = _mm_set1_epi8('\r');
    const __m128i lf = _mm_set1_epi8('\n');
    const __m128i zero = _mm_setzero_si128();
    auto breaks = [&](const char* p) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      return _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf));
    };
    while (n - i >= 16) {
      const std::size_t blocks = std::min<std::size_t>((n - i) / 16, 255);
      __m128i counters = zero;
      for (std::size_t b = 0; b < blocks; ++b, i += 16)
        counters = _mm_sub_epi8(counters, breaks(data + i));
      const __m128i sums = _mm_sad_epu8(counters, zero);
      count += static_cast<std::size_t>(_mm_cvtsi128_si32(sums)) +
               static_cast<std::size_t>(_mm_cvtsi128_si32(_mm_srli_si128(sums, 8)));
    }
    // The rest: the last sixteen bytes, of which only the last n - i are new.
    if (i < n) {
      const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(breaks(data + n - 16)));
      count += static_cast<std::size_t>(__builtin_popcount(mask >> (16 - (n - i))));
    }
    return count;
  }
#endif
  for (; i < n; ++i) count += (data[i] == '\r') + (data[i] == '\n');
  return count;
}

}  // namespace disco::http::detail
