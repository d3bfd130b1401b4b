#include "http/transport.h"

#include <unistd.h>

#include <array>
#include <charconv>
#include <deque>
#include <mutex>
#include <unordered_map>

#include <boost/asio/ssl/error.hpp>

#include "disco/detail/asio.h"
#include "disco/http/message.h"
#include "disco/registry_url.h"
#include "disco/tls.h"
#include "http/connection.h"
#include "http/head_writer.h"
#include "http/read_readiness.h"
#include "http/simple_head.h"
#include "http/tls_handshake.h"
#include "http/trace_context.h"

namespace disco::http::detail {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using detail::Connection;
using detail::ReadUntil;

std::atomic<std::uint64_t> g_transport_ids{0};

// Idle keep-alive connections of one io_context, by (client, address). An
// io_context service, so the connections die with their io_context and are
// only ever used on the thread(s) running it.
//
// No timer: stale connections are closed by the takes on their io_context
// (every exchange starts with one). A take closes its endpoint's stale ones,
// oldest first; at most once per kSweepEvery, it closes every endpoint's and
// forgets the emptied endpoints, so an instance no request goes to any more
// (one that left the registry) does not keep its connections and key for
// the process's life.
class PoolService final : public asio::execution_context::service {
 public:
  using key_type = PoolService;
  static inline asio::execution_context::id id;
  static constexpr std::chrono::seconds kSweepEvery{1};
  static constexpr std::chrono::milliseconds kForever = std::chrono::hours(24 * 365 * 100);

  explicit PoolService(asio::execution_context& context)
      : asio::execution_context::service(context) {}

  struct Idle {
    std::shared_ptr<Connection> connection;
    Clock::time_point expires;
  };

  // `now`: about now (the caller's clock read, not one of our own).
  std::shared_ptr<Connection> Take(std::string_view key, Clock::time_point now) {
    std::lock_guard lock(mu_);
    SweepIfDue(now);
    auto it = pools_.find(key);
    if (it == pools_.end()) return nullptr;
    auto& idle = it->second;
    // What a past peak left below the warm ones the steady load reuses: its
    // own endpoint's take closes it at once, not a second later.
    CloseExpired(idle, now);
    if (idle.empty()) return nullptr;
    // The most recently used: warmest, least likely closed by the peer.
    auto connection = std::move(idle.back().connection);
    idle.pop_back();
    return connection;
  }

  // `now`: when the connection went idle.
  void Put(std::string_view key, std::shared_ptr<Connection> connection, std::size_t max,
           Clock::time_point now, std::chrono::milliseconds max_idle) {
    std::lock_guard lock(mu_);
    auto it = pools_.find(key);
    if (it == pools_.end()) it = pools_.emplace(std::string(key), std::deque<Idle>{}).first;
    auto& idle = it->second;
    if (idle.size() >= max) {
      connection->Close();
      return;
    }
    // A library user's milliseconds::max() must not overflow the time point
    // (compared in milliseconds: in nanoseconds it would overflow already).
    idle.push_back(Idle{std::move(connection), now + std::min(max_idle, kForever)});
  }

  // Closes and forgets every idle connection whose key starts with `prefix`.
  void CloseAll(std::string_view prefix) {
    std::lock_guard lock(mu_);
    for (auto it = pools_.begin(); it != pools_.end();) {
      if (std::string_view(it->first).starts_with(prefix)) {
        for (auto& entry : it->second) entry.connection->Close();
        it = pools_.erase(it);
      } else {
        ++it;
      }
    }
  }

 private:
  // One transport's connections to one endpoint share a timeout and are kept
  // in the order they went idle, so the expired ones are at the front.
  static void CloseExpired(std::deque<Idle>& idle, Clock::time_point now) {
    while (!idle.empty() && idle.front().expires <= now) {
      idle.front().connection->Close();
      idle.pop_front();
    }
  }

  void SweepIfDue(Clock::time_point now) {
    if (now < next_sweep_) return;
    next_sweep_ = now + kSweepEvery;
    for (auto it = pools_.begin(); it != pools_.end();) {
      CloseExpired(it->second, now);
      it = it->second.empty() ? pools_.erase(it) : std::next(it);
    }
  }

  void shutdown() override {
    std::lock_guard lock(mu_);
    for (auto& [key, idle] : pools_) {
      for (auto& entry : idle) entry.connection->Close();
    }
    pools_.clear();
  }

  // Heterogeneous lookup: the hot path looks up a string_view, no allocation.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::mutex mu_;
  std::unordered_map<std::string, std::deque<Idle>, Hash, std::equal_to<>> pools_;
  Clock::time_point next_sweep_{};
};

bool MethodHasBody(std::string_view method) {
  return !(method == "GET" || method == "HEAD" || method == "DELETE" || method == "OPTIONS" ||
           method == "TRACE");
}

// Parses a response straight into a ClientResponse: status, headers as
// owned pairs, body; no intermediate header container.
class ResponseParser final : public detail::BodyParser<false> {
 public:
  explicit ResponseParser(ClientResponse& out) : BodyParser(out.body), out_(out) {
    out_.headers.reserve(8);  // one allocation for a typical answer's fields
  }

 private:
  void on_response_impl(int code, beast::string_view, int, beast::error_code& ec) override {
    out_.status = code;
    ec = {};
  }
  void on_field_impl(bhttp::field, beast::string_view name, beast::string_view value,
                     beast::error_code& ec) override {
    out_.headers.emplace_back(std::string(name.data(), name.size()),
                              std::string(value.data(), value.size()));
    ec = {};
  }
  void on_header_impl(beast::error_code& ec) override { ec = {}; }

  ClientResponse& out_;
};

constexpr std::size_t kResponseHeaderLimit = 64 * 1024;

// The answer at the front of `buffer`, when the strict fast parser takes it
// (http/simple_head.h): fills `out` and `keep_alive`, consumes the bytes.
// False: nothing done, Beast's turn.
bool TakeSimpleMessage(beast::flat_buffer& buffer, std::size_t body_limit, ClientResponse& out,
                       bool& keep_alive) {
  detail::SimpleMessage simple;
  const auto data = buffer.data();
  if (detail::ParseSimpleResponse({static_cast<const char*>(data.data()), data.size()},
                                  kResponseHeaderLimit, body_limit,
                                  simple) != detail::SimpleParse::kDone)
    return false;
  out.status = simple.status;
  out.headers.reserve(simple.field_count);
  for (std::size_t i = 0; i < simple.field_count; ++i)
    out.headers.emplace_back(simple.fields[i].name, simple.fields[i].value);
  out.body.assign(simple.body);
  keep_alive = simple.keep_alive;
  buffer.consume(simple.size);
  return true;
}

Awaitable<std::shared_ptr<Connection>> Connect(asio::io_context& ioc, std::string_view address,
                                               Clock::time_point deadline, AttemptResult& result) {
  auto host_port = ParseHostPort(address);
  if (!host_port) {
    SetFailed(result, CallOutcome::kConnectFailed, "bad address '" + std::string(address) + "'");
    co_return nullptr;
  }
  auto connection = std::make_shared<Connection>(detail::Socket(ioc.get_executor()));
  connection->SetDeadline(deadline);
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(host_port->host, ec);
  if (!ec) {
    co_await connection->socket().async_connect(tcp::endpoint(ip, host_port->port),
                                                asio::redirect_error(http::use_awaitable, ec));
  } else {
    // A name lookup is bounded by the attempt's deadline too (the
    // connection's deadline closes its socket, which a lookup does not use).
    using Resolver = asio::ip::basic_resolver<tcp, detail::Executor>;
    auto resolver = std::make_shared<Resolver>(ioc.get_executor());
    asio::basic_waitable_timer<Clock, asio::wait_traits<Clock>, detail::Executor> guard(
        ioc.get_executor());
    guard.expires_at(deadline);
    guard.async_wait([weak = std::weak_ptr(resolver)](boost::system::error_code e) {
      if (auto r = weak.lock(); r && !e) r->cancel();
    });
    auto endpoints =
        co_await resolver->async_resolve(host_port->host, std::to_string(host_port->port),
                                         asio::redirect_error(http::use_awaitable, ec));
    guard.cancel();
    if (ec == asio::error::operation_aborted) ec = beast::error::timeout;
    if (!ec) {
      co_await asio::async_connect(connection->socket(), endpoints,
                                   asio::redirect_error(http::use_awaitable, ec));
    }
  }
  if (ec) {
    const bool timed_out = connection->timed_out();
    connection->Close();
    SetFailed(result,
              ec == asio::error::connection_refused ? CallOutcome::kConnectRefused
                                                    : CallOutcome::kConnectFailed,
              "cannot connect to " + std::string(address) + ": " +
                  (timed_out ? std::string("timed out") : ec.message()));
    co_return nullptr;
  }
  auto& socket = connection->socket();
  socket.set_option(tcp::no_delay(true), ec);
  // Connecting registered the socket for EPOLLOUT too, and Asio never takes
  // that back: with edge-triggered epoll, every ACK that frees send-buffer
  // space then woke the reactor for nothing (most of the events the
  // gateway's epoll_wait returned under load). Registering the descriptor
  // anew drops it; writes that must wait (rare: detail::WriteNow) add it again.
  const auto protocol = socket.local_endpoint(ec).protocol();
  if (!ec) {
    const auto fd = socket.release(ec);
    if (!ec) {
      socket.assign(protocol, fd, ec);
      if (ec) ::close(fd);  // released: no longer the socket's to close
    }
  }
  if (ec) {
    connection->Close();
    SetFailed(result, CallOutcome::kConnectFailed,
              "cannot set up the connection to " + std::string(address) + ": " + ec.message());
    co_return nullptr;
  }
  socket.non_blocking(true, ec);  // for detail::WriteNow
  co_return connection;
}

// TLS on a new connection (control.tls): false, with `result` failed as a
// connect failure (no request was sent), when the handshake or the
// identity check fails.
Awaitable<bool> Secure(Connection& connection, const ExchangeControl& control,
                       std::string_view address, AttemptResult& result) {
  const auto host_port = ParseHostPort(address);  // Connect parsed it already
  std::string error;
  const bool secured = co_await detail::ConnectTls(connection, *control.tls, host_port->host,
                                                   control.identity, address, error);
  if (!secured) {
    // A certificate that does not verify or name the service will not do so
    // on the next try either: refused, which ejects the instance at once
    // (outlier detection), as a refused connection does. A handshake that
    // timed out is an ordinary connect failure.
    const bool timed_out = connection.timed_out();
    connection.Close();
    SetFailed(result, timed_out ? CallOutcome::kConnectFailed : CallOutcome::kConnectRefused,
              std::move(error));
  }
  co_return secured;
}

}  // namespace

void Interrupt::Cancel() {
  cancelled_ = true;
  if (active_) active_->Close();
}

void AttemptResult::Reset() {
  outcome = CallOutcome::kSuccess;
  answered = false;
  code = ErrorCode::kUnavailable;
  error.clear();
  response = ClientResponse{};
}

void SetFailed(AttemptResult& result, CallOutcome outcome, std::string error) {
  result.outcome = outcome;
  result.code = ErrorCodeFor(outcome);
  result.error = std::move(error);
}

Transport::Transport(TransportOptions options)
    : options_(std::move(options)), id_(std::to_string(g_transport_ids.fetch_add(1) + 1) + "|") {}

// The request line and header block, written by hand: one string, no
// per-field allocation (the gateway sends one per proxied request). Headers
// whose name or value holds a line break are dropped (no header injection).
std::string Transport::SerializeHead(const ClientRequest& request, std::string_view authority,
                                     std::string_view target) const {
  const std::string_view user_agent = options_.user_agent;
  using detail::FieldSize;
  bool own_host = false;
  bool own_agent = false;
  std::size_t extra = 0;  // room for the caller's headers
  auto measure = [&](std::string_view name, std::string_view value) {
    own_host = own_host || HeaderNameEquals(name, "Host");
    own_agent = own_agent || HeaderNameEquals(name, "User-Agent");
    extra += FieldSize(name, value);
  };
  for (const auto& [name, value] : request.headers) measure(name, value);
  for (const auto& [name, value] : request.borrowed_headers) measure(name, value);
  // An upper bound: request line, every field, Content-Length's up to 20
  // digits, the blank line.
  const std::size_t room = request.method.size() + 1 + 1 + target.size() + 11 +
                           FieldSize("Host", authority) + FieldSize("User-Agent", user_agent) +
                           FieldSize("Content-Type", request.content_type) +
                           FieldSize("X-Request-Id", request.request_id) +
                           FieldSize("traceparent", request.traceparent) +
                           FieldSize("Authorization", request.authorization) + extra +
                           FieldSize("Content-Length", "18446744073709551615") + 2;
  auto write = [&](detail::HeadWriter& w) {
    w.Put(request.method);
    w.Put(" ");
    if (target.empty() || target.front() == '?') w.Put("/");
    w.Put(target);
    w.Line(" HTTP/1.1");
    if (!own_host) w.OwnField("Host", authority);
    if (!own_agent) w.OwnField("User-Agent", user_agent);
    if (!request.content_type.empty()) w.OwnField("Content-Type", request.content_type);
    if (!request.request_id.empty()) w.OwnField("X-Request-Id", request.request_id);
    if (detail::IsValidTraceparent(request.traceparent))
      w.OwnField("traceparent", request.traceparent);
    if (!request.authorization.empty()) w.OwnField("Authorization", request.authorization);
    auto put = [&](std::string_view name, std::string_view value) {
      if (!HeaderNameEquals(name, "Content-Length") && !HeaderNameEquals(name, "Transfer-Encoding"))
        w.CheckedField(name, value);
    };
    for (const auto& [name, value] : request.headers) put(name, value);
    for (const auto& [name, value] : request.borrowed_headers) put(name, value);
    if (!request.body.empty() || MethodHasBody(request.method)) {
      char digits[24];
      auto [end, ec] = std::to_chars(digits, digits + sizeof digits, request.body.size());
      w.Field("Content-Length", std::string_view(digits, static_cast<std::size_t>(end - digits)));
    }
    w.Line("");
  };
  std::string out;
  out.resize_and_overwrite(room, [&](char* buffer, std::size_t) {
    return detail::WriteCheckedHead(buffer, write);
  });
  return out;
}

void Transport::CloseIdle(asio::io_context& ioc) const {
  asio::use_service<PoolService>(ioc).CloseAll(id_);
}

Awaitable<void> Transport::RoundTrip(std::string_view wire, std::string_view body,
                                     std::string_view method, std::string_view address,
                                     Clock::time_point started, Clock::time_point deadline,
                                     AttemptResult& result, const ExchangeControl* control) const {
  // Awaitable's executor is an io_context's (disco/http/awaitable.h).
  asio::io_context* ioc = &(co_await asio::this_coro::executor).context();
  auto& pools = asio::use_service<PoolService>(*ioc);
  Interrupt* const interrupt = control ? control->interrupt : nullptr;
  // The exchange in flight is the interrupt's until this frame ends, however
  // it ends.
  struct Release {
    Interrupt* interrupt;
    ~Release() {
      if (interrupt) interrupt->active_.reset();
    }
  } release{interrupt};
  auto cancelled = [&] {
    if (interrupt == nullptr || !interrupt->cancelled()) return false;
    SetFailed(result, CallOutcome::kReset,
              "the exchange with " + std::string(address) + " was cancelled");
    result.code = ErrorCode::kCancelled;
    return true;
  };
  // The pool key (transport id + address) is built in a per-thread buffer right
  // before each use, never across a suspension: no allocation per attempt.
  const tls::Config* const tls = control ? control->tls : nullptr;
  auto pool_key = [&]() -> std::string_view {
    thread_local std::string key;
    key.assign(id_);
    if (tls) {
      // The settings' generation too: after a reload (a new CA, say) no
      // connection verified under the old settings is reused.
      key.append("tls|");
      char digits[24];
      const auto end = std::to_chars(digits, digits + sizeof digits, tls->generation()).ptr;
      key.append(digits, end);
      key.push_back('|');
      key.append(control->identity);
      key.push_back('|');
    }
    key.append(address);
    return key;
  };

  boost::system::error_code ec;
  // A pooled connection may have been closed by the peer while idle; if it
  // fails before any answer byte, the request was not processed: use a fresh
  // connection (once) without calling it a retry.
  for (int round = 0; round < 2; ++round) {
    if (cancelled()) co_return;
    auto connection =
        round == 0 ? pools.Take(pool_key(), started) : nullptr;
    const bool reused = connection != nullptr;
    // Nothing came for it while it was pooled (read_readiness.h).
    const bool quiet = reused && !tls && detail::TakeQuiet(connection->socket());
    if (!connection) {
      const auto connect_by = control ? std::min(deadline, control->connect_deadline) : deadline;
      connection = co_await Connect(*ioc, address, connect_by, result);
      if (!connection) co_return;
      if (tls) {
        const bool secured = co_await Secure(*connection, *control, address, result);
        if (!secured) co_return;
      }
      if (cancelled()) {
        connection->Close();
        co_return;
      }
    }
    if (interrupt) interrupt->active_ = connection;
    connection->SetDeadline(deadline);
    std::array<asio::const_buffer, 2> out{asio::buffer(wire), asio::buffer(body)};
    // The answer is read next: the request joins the send batch.
    if (!detail::WriteSoon(*connection, out, ec)) co_await detail::WriteRest(*connection, out, ec);
    if (ec) {
      const bool timed_out = connection->timed_out();
      connection->Close();
      if (cancelled()) co_return;
      if (reused && !timed_out) continue;
      SetFailed(result, timed_out ? CallOutcome::kTimeout : CallOutcome::kReset,
                "sending to " + std::string(address) +
                    " failed: " + (timed_out ? std::string("timed out") : ec.message()));
      co_return;
    }
    auto& buffer = connection->buffer();
    bool keep = false;
    bool got_some = false;  // of the answer, before an error
    // The common answer (one read, Content-Length body) goes through the
    // strict fast parser; anything else, and whatever it defers, through
    // Beast from the first byte.
    bool parsed = false;
    if (method != "HEAD") {
      if (buffer.size() == 0) {
        // The request still waits in the send batch and nothing came while
        // the connection was pooled: no answer or close can be here yet, so
        // the read waits for the next event (read_readiness.h).
        if (quiet && connection->sending() && !connection->tail_pending())
          detail::SkipFirstReceive(connection->socket());
        const std::size_t n = co_await connection->AsyncReadSome(
            buffer.prepare(detail::ReadSize(buffer)),
            asio::redirect_error(http::use_awaitable, ec));
        buffer.commit(n);
        detail::TranslateReadError(*connection, ec);
      }
      if (!ec) parsed = TakeSimpleMessage(buffer, options_.response_limit, result.response, keep);
    }
    if (!parsed && !ec) {
      ResponseParser parser(result.response);
      parser.body_limit(options_.response_limit);
      parser.header_limit(kResponseHeaderLimit);
      if (method == "HEAD") parser.skip(true);  // the answer has headers only
      // Header first: an announced length above the limit is refused before
      // any body byte is read (Beast's own check did not fire for it here).
      if (!detail::ParseBuffered(*connection, parser, ReadUntil::kHeader, ec))
        co_await detail::ReadMore(*connection, parser, ReadUntil::kHeader, ec);
      if (!ec && parser.content_length().value_or(0) > options_.response_limit)
        ec = bhttp::error::body_limit;
      if (!ec && !detail::ParseBuffered(*connection, parser, ReadUntil::kMessage, ec))
        co_await detail::ReadMore(*connection, parser, ReadUntil::kMessage, ec);
      got_some = parser.got_some();
      if (!ec) keep = parser.keep_alive();
    }
    if (ec == bhttp::error::body_limit) {
      // The instance works (outcome kSuccess); the answer is just too big for us.
      result.code = ErrorCode::kMalformed;
      result.error = "the answer of " + std::string(address) + " is larger than " +
                     std::to_string(options_.response_limit) + " bytes";
      connection->Shutdown();
      connection->Close();
      co_return;
    }
    if (ec) {
      bool nothing_read = !got_some && buffer.size() == 0;
      // TLS 1.3: a server that refuses our certificate says so after the
      // client's side of the handshake is done, so it shows at the first
      // read. The request was never processed: a failed connect.
      const bool tls_refused = !reused && nothing_read && connection->tls() != nullptr &&
                               ec.category() == asio::error::get_ssl_category();
      bool closed = ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
                    ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
      connection->Close();
      if (cancelled()) co_return;
      if (reused && nothing_read && closed) continue;
      if (tls_refused) {
        SetFailed(result, CallOutcome::kConnectFailed,
                  "TLS handshake with " + std::string(address) +
                      " failed: the server refused it: " + ec.message());
      } else if (ec == beast::error::timeout) {
        SetFailed(result, CallOutcome::kTimeout,
                  std::string(address) + " did not answer within the per-try timeout");
      } else if (closed || ec == bhttp::error::partial_message) {
        SetFailed(result, CallOutcome::kReset,
                  std::string(address) + " closed the connection: " + ec.message());
      } else {
        // Not HTTP we can read: counts against the endpoint, never retried.
        SetFailed(result, CallOutcome::kServerError,
                  "bad answer from " + std::string(address) + ": " + ec.message());
      }
      co_return;
    }
    result.answered = true;
    if (result.response.status >= 500) result.outcome = CallOutcome::kServerError;
    result.response.address = address;
    // Not a connection whose request is still going out (an upstream may
    // answer before it read the whole request) or failed to.
    if (keep && buffer.size() == 0 && !connection->sending() && !connection->write_failed()) {
      connection->ClearDeadline();
      if (!tls) detail::MarkQuiet(connection->socket());
      // Idle from now, not from the attempt's start: a slow answer does not
      // age its connection.
      pools.Put(pool_key(), std::move(connection), options_.max_idle_per_endpoint, Clock::now(),
                options_.pool_idle_timeout);
    } else {
      connection->Shutdown();
      connection->Close();
    }
    co_return;
  }
  SetFailed(result, CallOutcome::kReset, std::string(address) + " closed the connection");
}

}  // namespace disco::http::detail
