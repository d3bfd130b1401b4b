#include "http/connection.h"

#include <algorithm>
#include <cstring>

namespace disco::http::detail {

Connection::Connection(Socket socket)
    : socket_(std::move(socket)), timer_(socket_.get_executor()) {}

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
  ClearDeadline();
  boost::system::error_code ignored;
  socket_.close(ignored);
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
  boost::system::error_code ignored;
  socket_.close(ignored);  // the pending operation completes with an error
}

template <bool kIsRequest>
Awaitable<void> Read(Connection& connection, bhttp::basic_parser<kIsRequest>& parser,
                     ReadUntil until, boost::system::error_code& ec) {
  ec = {};
  parser.eager(true);
  auto& buffer = connection.buffer();
  for (;;) {
    if (until == ReadUntil::kHeader ? parser.is_header_done() : parser.is_done()) co_return;
    if (buffer.size() > 0) {
      const std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (ec != bhttp::error::need_more) {
        if (ec) co_return;
        if (used > 0) continue;
      }
      ec = {};
    }
    // Room for at least 4 KiB (a typical request or small answer in one
    // read), at most 64 KiB per read, as Beast's own read loop does.
    const std::size_t room = buffer.capacity() - buffer.size();
    const std::size_t size = std::clamp<std::size_t>(room, 4096, 65536);
    const std::size_t n = co_await connection.socket().async_read_some(
        buffer.prepare(size), asio::redirect_error(asio::use_awaitable, ec));
    buffer.commit(n);
    if (ec == asio::error::eof) {
      if (!parser.got_some()) {
        ec = bhttp::error::end_of_stream;
        co_return;
      }
      // A response delimited by the end of the connection ends here; a
      // truncated message is partial_message.
      ec = {};
      parser.put_eof(ec);
      co_return;
    }
    if (ec) {
      if (connection.timed_out()) ec = beast::error::timeout;
      co_return;
    }
  }
}

template Awaitable<void> Read<true>(Connection&, bhttp::basic_parser<true>&, ReadUntil,
                                    boost::system::error_code&);
template Awaitable<void> Read<false>(Connection&, bhttp::basic_parser<false>&, ReadUntil,
                                     boost::system::error_code&);

bool HasLineBreak(std::string_view text) {
  // memchr is vectorised; a loop over both characters was not, and this
  // runs over every header name and value written.
  return !text.empty() && (std::memchr(text.data(), '\r', text.size()) != nullptr ||
                           std::memchr(text.data(), '\n', text.size()) != nullptr);
}

}  // namespace disco::http::detail
