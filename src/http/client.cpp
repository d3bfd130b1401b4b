#include "disco/http/client.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <map>
#include <mutex>
#include <unordered_map>

#include "disco/detail/asio.h"
#include "disco/http/message.h"
#include "disco/metrics.h"
#include "disco/registry_url.h"
#include "disco/resolver.h"
#include "http/connection.h"
#include "http/head_writer.h"
#include "http/trace_context.h"
#include "http/retry_policy.h"
#include "http/simple_head.h"
#include "util/fast_random.h"
#include "util/log.h"

namespace disco::http {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using detail::Connection;
using detail::ReadUntil;

std::atomic<std::uint64_t> g_client_ids{0};

// Idle keep-alive connections of one io_context, by (client, address). An
// io_context service, so the connections die with their io_context and are
// only ever used on the thread(s) running it.
class PoolService final : public asio::execution_context::service {
 public:
  using key_type = PoolService;
  static inline asio::execution_context::id id;

  explicit PoolService(asio::execution_context& context)
      : asio::execution_context::service(context) {}

  struct Idle {
    std::shared_ptr<Connection> connection;
    Clock::time_point since;
  };

  // `now`: about now (the caller's clock read, not one of our own).
  std::shared_ptr<Connection> Take(std::string_view key, std::chrono::milliseconds max_idle,
                                   Clock::time_point now) {
    std::lock_guard lock(mu_);
    auto it = pools_.find(key);
    if (it == pools_.end()) return nullptr;
    auto& idle = it->second;
    while (!idle.empty()) {
      Idle entry =
          std::move(idle.back());  // most recently used first: warmest, least likely closed
      idle.pop_back();
      if (now - entry.since < max_idle) return std::move(entry.connection);
      entry.connection->Close();
    }
    return nullptr;
  }

  void Put(std::string_view key, std::shared_ptr<Connection> connection, std::size_t max,
           Clock::time_point now) {
    std::lock_guard lock(mu_);
    auto it = pools_.find(key);
    if (it == pools_.end()) it = pools_.emplace(std::string(key), std::vector<Idle>{}).first;
    auto& idle = it->second;
    if (idle.size() >= max) {
      connection->Close();
      return;
    }
    idle.push_back(Idle{std::move(connection), now});
  }

 private:
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
  std::unordered_map<std::string, std::vector<Idle>, Hash, std::equal_to<>> pools_;
};

// RFC 9110 9.2.2: the safe methods (GET, HEAD, OPTIONS, TRACE), PUT and DELETE.
bool IsIdempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" ||
         method == "PUT" || method == "DELETE";
}

// Idempotent methods, and any request carrying an Idempotency-Key: the
// server answers a repeat of it with the first result instead of acting twice.
bool IsRetrySafe(const ClientRequest& request) {
  if (IsIdempotent(request.method)) return true;
  auto is_key = [](const auto& header) {
    return HeaderNameEquals(header.first, "Idempotency-Key");
  };
  return std::any_of(request.headers.begin(), request.headers.end(), is_key) ||
         std::any_of(request.borrowed_headers.begin(), request.borrowed_headers.end(), is_key);
}

// Views into the request's URL (which outlives the call): no copies, and a
// smaller Send frame.
struct ParsedUrl {
  std::string_view authority;  // service name or host:port
  std::string_view target;     // path and query as given: may be empty or start with '?'
  bool direct = false;         // authority is host:port
};

Result<ParsedUrl> ParseUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return Fail(ErrorCode::kInvalidArgument,
                "URL must start with http:// (got '" + std::string(url) + "')");
  }
  url.remove_prefix(kScheme.size());
  auto slash = url.find_first_of("/?");
  ParsedUrl out;
  out.authority = url.substr(0, slash);
  if (slash != std::string_view::npos) out.target = url.substr(slash);
  if (out.authority.empty())
    return Fail(ErrorCode::kInvalidArgument, "URL has no host or service name");
  out.direct = out.authority.find(':') != std::string_view::npos;
  return out;
}

// One attempt's result. Lives in Client::Send's frame and is filled in
// place by Attempt: no result is moved between coroutine frames, and
// Attempt's frame stays well under the 1 KiB that Asio recycles and malloc's
// tcache serves (above that, every call takes malloc's slow path).
struct AttemptResult {
  CallOutcome outcome = CallOutcome::kSuccess;  // kServerError only for a 5xx answer
  bool answered = false;                        // `response` holds an HTTP answer
  ErrorCode code = ErrorCode::kUnavailable;     // when !answered
  std::string error;                            // when !answered
  ClientResponse response;

  void Reset() {
    outcome = CallOutcome::kSuccess;
    answered = false;
    code = ErrorCode::kUnavailable;
    error.clear();
    response = ClientResponse{};
  }
};

void SetFailed(AttemptResult& result, CallOutcome outcome, std::string error) {
  result.outcome = outcome;
  result.code = ErrorCodeFor(outcome);
  result.error = std::move(error);
}

// Waits (polling, without blocking the thread) until `resolver` has its
// first snapshot, reports a registry error, or `until` passes. A coroutine
// of its own: its timer stays out of Send's frame.
Awaitable<void> WaitForSnapshot(Resolver& resolver, Clock::time_point until) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (resolver.snapshot()->version == 0 && resolver.LastError().empty() &&
         Clock::now() < until) {
    timer.expires_after(std::chrono::milliseconds(5));
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(http::use_awaitable, ec));
  }
}

// The backoff before a retry (a coroutine of its own for the same reason).
Awaitable<void> Sleep(Clock::duration pause) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(pause);
  boost::system::error_code ec;
  co_await timer.async_wait(asio::redirect_error(http::use_awaitable, ec));
}

// Per-status counters of one service, filled on first use, so the hot path
// does not build label keys (a lock and a map lookup) per call.
class StatusCounters {
 public:
  StatusCounters(Family<Counter>& family, std::string service)
      : family_(family), service_(std::move(service)) {}

  Counter& ForStatus(int status) {
    if (status < 100 || status > 599) return ForOutcome(std::to_string(status));
    auto& slot = by_status_[static_cast<std::size_t>(status - 100)];
    Counter* counter = slot.load(std::memory_order_acquire);
    if (counter == nullptr) {
      counter = &family_.With({service_, std::to_string(status)});
      slot.store(counter, std::memory_order_release);
    }
    return *counter;
  }
  Counter& ForOutcome(std::string_view outcome) { return family_.With({service_, outcome}); }

 private:
  Family<Counter>& family_;
  const std::string service_;
  std::array<std::atomic<Counter*>, 500> by_status_{};
};

// http_client_requests_total's outcome for a call that got no answer.
std::string_view FinalOutcomeLabel(ErrorCode code) {
  switch (code) {
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kReset: return "reset";
    case ErrorCode::kMalformed: return "bad_answer";
    default: return "unavailable";
  }
}

bool MethodHasBody(std::string_view method) {
  return !(method == "GET" || method == "HEAD" || method == "DELETE" || method == "OPTIONS" ||
           method == "TRACE");
}

// The request line and header block, written by hand: one string, no
// per-field allocation (the gateway sends one per proxied request). Headers
// whose name or value holds a line break are dropped (no header injection).
std::string SerializeHead(const ClientRequest& request, const ParsedUrl& url,
                          std::string_view user_agent) {
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
  const std::size_t room = request.method.size() + 1 + 1 + url.target.size() + 11 +
                           FieldSize("Host", url.authority) + FieldSize("User-Agent", user_agent) +
                           FieldSize("Content-Type", request.content_type) +
                           FieldSize("X-Request-Id", request.request_id) +
                           FieldSize("traceparent", request.traceparent) +
                           FieldSize("Authorization", request.authorization) + extra +
                           FieldSize("Content-Length", "18446744073709551615") + 2;
  std::string out;
  out.resize_and_overwrite(room, [&](char* buffer, std::size_t) {
    detail::HeadWriter w(buffer);
    w.Put(request.method);
    w.Put(" ");
    if (url.target.empty() || url.target.front() == '?') w.Put("/");
    w.Put(url.target);
    w.Put(" HTTP/1.1\r\n");
    if (!own_host) w.OwnField("Host", url.authority);
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
    w.Put("\r\n");
    return w.size();
  });
  return out;
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

bool Contains(const std::vector<std::string>& ids, std::string_view id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// For a retry: an endpoint this call has not tried yet. The balancer gets a
// few more picks first (its choice, its counters); if it keeps choosing
// tried instances (a hash policy always does), the first untried endpoint
// that is not ejected, from a random place in the snapshot. Keeps `picked`
// when there is none.
EndpointPtr PickUntried(Resolver& resolver, const PickContext& pick, EndpointPtr picked,
                        const std::vector<std::string>& tried) {
  for (int i = 0; i < 3 && Contains(tried, picked->instance.id); ++i) {
    auto again = resolver.Pick(pick);
    if (!again) break;
    picked = std::move(again);
  }
  if (!Contains(tried, picked->instance.id)) return picked;
  auto snapshot = resolver.snapshot();
  const auto& endpoints = snapshot->endpoints;
  if (endpoints.empty()) return picked;
  const auto start = FastRandomBelow(static_cast<std::uint32_t>(endpoints.size()));
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    const Endpoint& e = endpoints[(start + i) % endpoints.size()];
    if (e.ejected() || Contains(tried, e.instance.id)) continue;
    e.stats->picks.fetch_add(1, std::memory_order_relaxed);
    return EndpointPtr(snapshot, &e);
  }
  return picked;
}

Error NoInstance(Resolver& resolver, std::string_view service) {
  std::string why = "no instance of " + std::string(service) + " is available";
  if (auto error = resolver.LastError(); !error.empty()) why += " (registry: " + error + ")";
  return Error{ErrorCode::kUnavailable, std::move(why)};
}

}  // namespace

std::string_view ClientResponse::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (HeaderNameEquals(k, name)) return v;
  }
  return {};
}

// What the client keeps per target service (or per "direct" for host:port URLs).
struct ServiceState {
  ServiceState(std::string name, MetricsRegistry& metrics, Family<Counter>& requests,
               Family<Counter>& attempts, double budget_percent, std::uint32_t budget_min)
      : label(std::move(name)),
        budget(budget_percent, budget_min),
        request_counters(requests, label),
        attempt_counters(attempts, label),
        latency(&metrics
                     .HistogramFamily("http_client_request_duration_seconds",
                                      "Duration of outgoing HTTP calls, retries included",
                                      {"service"})
                     .With({label})),
        budget_exhausted(
            &metrics
                 .CounterFamily("http_client_retry_budget_exhausted_total",
                                "Retries wanted but refused because the retry budget was spent",
                                {"service"})
                 .With({label})) {}

  const std::string label;
  std::unique_ptr<Resolver> resolver;  // null for "direct"
  RetryBudget budget;
  StatusCounters request_counters;
  StatusCounters attempt_counters;
  Histogram* latency;
  Counter* budget_exhausted;
  std::atomic<bool> resolved{false};  // the resolver has had a snapshot from the registry
};

struct Client::Impl {
  Impl(Registry& r, ClientOptions o) : registry(r), options(std::move(o)) {
    if (options.max_attempts < 1) options.max_attempts = 1;
    if (options.deadline.count() <= 0)
      options.deadline = options.per_try_timeout * options.max_attempts;
    metrics = options.metrics ? options.metrics : &MetricsRegistry::Default();
    requests =
        &metrics->CounterFamily("http_client_requests_total",
                                "Outgoing HTTP calls by target service and outcome (status code or "
                                "error), counting the final result of each call",
                                {"service", "outcome"});
    attempts_family = &metrics->CounterFamily("http_client_attempts_total",
                                              "Attempts of outgoing HTTP calls, retries included",
                                              {"service", "outcome"});
    retries = &metrics->CounterFamily(
        "http_client_retries_total", "Attempts retried on another instance", {"service", "reason"});
    retry_options.per_try_timeout = options.per_try_timeout;
    retry_options.deadline = options.deadline;
    retry_options.backoff_base = options.backoff_base;
    retry_options.backoff_max = options.backoff_max;
    direct = NewState("direct");
  }

  std::unique_ptr<ServiceState> NewState(std::string label) {
    return std::make_unique<ServiceState>(std::move(label), *metrics, *requests, *attempts_family,
                                          options.retry_budget_percent, options.retry_budget_min);
  }

  Result<ServiceState*> GetService(std::string_view service) {
    std::lock_guard lock(mu);
    if (auto it = services.find(service); it != services.end()) return it->second.get();
    ResolverOptions resolver_options;
    resolver_options.policy = options.policy;
    resolver_options.outlier_detection = options.outlier_detection;
    resolver_options.metrics = metrics;
    auto made = Resolver::Make(registry, std::string(service), resolver_options);
    if (!made) return std::unexpected(made.error());
    auto state = NewState(std::string(service));
    state->resolver = std::move(*made);
    ServiceState* raw = state.get();
    services.emplace(std::string(service), std::move(state));
    return raw;
  }

  // `wire` is the request head (SerializeHead); the body is request.body.
  // `result` must be Reset(). `started`: when the attempt began (a
  // connection parked since counts as idle from then: a little early, so
  // a little safer).
  Awaitable<void> Attempt(const std::string& wire, std::string_view address,
                          const ClientRequest& request, Clock::time_point started,
                          Clock::time_point deadline, AttemptResult& result);
  // A new connection to `address`, or null with `result` failed.
  static Awaitable<std::shared_ptr<Connection>> Connect(asio::io_context& ioc,
                                                        std::string_view address,
                                                        Clock::time_point deadline,
                                                        AttemptResult& result);

  Registry& registry;
  ClientOptions options;
  RetryOptions retry_options;
  const std::string id = std::to_string(g_client_ids.fetch_add(1) + 1) + "|";
  MetricsRegistry* metrics;
  Family<Counter>* requests;
  Family<Counter>* attempts_family;
  Family<Counter>* retries;
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> attempts{0};
  std::atomic<std::uint64_t> retried{0};
  std::atomic<std::uint64_t> exhausted{0};
  std::unique_ptr<ServiceState> direct;
  std::mutex mu;
  std::map<std::string, std::unique_ptr<ServiceState>, std::less<>> services;
};

Awaitable<std::shared_ptr<Connection>> Client::Impl::Connect(asio::io_context& ioc,
                                                             std::string_view address,
                                                             Clock::time_point deadline,
                                                             AttemptResult& result) {
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

Awaitable<void> Client::Impl::Attempt(const std::string& wire, std::string_view address,
                                      const ClientRequest& request, Clock::time_point started,
                                      Clock::time_point deadline, AttemptResult& result) {
  // Awaitable's executor is an io_context's (disco/http/awaitable.h).
  asio::io_context* ioc = &(co_await asio::this_coro::executor).context();
  auto& pools = asio::use_service<PoolService>(*ioc);
  // The pool key (client id + address) is built in a per-thread buffer right
  // before each use, never across a suspension: no allocation per attempt.
  auto pool_key = [&]() -> std::string_view {
    thread_local std::string key;
    key.assign(id);
    key.append(address);
    return key;
  };

  boost::system::error_code ec;
  // A pooled connection may have been closed by the peer while idle; if it
  // fails before any answer byte, the request was not processed: use a fresh
  // connection (once) without calling it a retry.
  for (int round = 0; round < 2; ++round) {
    auto connection =
        round == 0 ? pools.Take(pool_key(), options.pool_idle_timeout, started) : nullptr;
    const bool reused = connection != nullptr;
    if (!connection) {
      connection = co_await Connect(*ioc, address, deadline, result);
      if (!connection) co_return;
    }
    connection->SetDeadline(deadline);
    std::array<asio::const_buffer, 2> out{asio::buffer(wire), asio::buffer(request.body)};
    if (!detail::WriteNow(*connection, out, ec))
      co_await asio::async_write(connection->socket(), out,
                                 asio::redirect_error(http::use_awaitable, ec));
    if (ec) {
      const bool timed_out = connection->timed_out();
      connection->Close();
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
    if (request.method != "HEAD") {
      if (buffer.size() == 0) {
        const std::size_t n = co_await connection->socket().async_read_some(
            buffer.prepare(detail::ReadSize(buffer)),
            asio::redirect_error(http::use_awaitable, ec));
        buffer.commit(n);
        detail::TranslateReadError(*connection, ec);
      }
      if (!ec) parsed = TakeSimpleMessage(buffer, options.response_limit, result.response, keep);
    }
    if (!parsed && !ec) {
      ResponseParser parser(result.response);
      parser.body_limit(options.response_limit);
      parser.header_limit(kResponseHeaderLimit);
      if (request.method == "HEAD") parser.skip(true);  // the answer has headers only
      // Header first: an announced length above the limit is refused before
      // any body byte is read (Beast's own check did not fire for it here).
      if (!detail::ParseBuffered(*connection, parser, ReadUntil::kHeader, ec))
        co_await detail::ReadMore(*connection, parser, ReadUntil::kHeader, ec);
      if (!ec && parser.content_length().value_or(0) > options.response_limit)
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
                     std::to_string(options.response_limit) + " bytes";
      connection->socket().shutdown(tcp::socket::shutdown_both, ec);
      connection->Close();
      co_return;
    }
    if (ec) {
      bool nothing_read = !got_some && buffer.size() == 0;
      bool closed = ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
                    ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
      connection->Close();
      if (reused && nothing_read && closed) continue;
      if (ec == beast::error::timeout) {
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
    if (keep && buffer.size() == 0) {
      connection->ClearDeadline();
      pools.Put(pool_key(), std::move(connection), options.max_idle_per_endpoint, started);
    } else {
      connection->socket().shutdown(tcp::socket::shutdown_both, ec);
      connection->Close();
    }
    co_return;
  }
  SetFailed(result, CallOutcome::kReset, std::string(address) + " closed the connection");
}

Client::Client(Registry& registry, ClientOptions options)
    : impl_(std::make_unique<Impl>(registry, std::move(options))) {}

Client::~Client() = default;

Result<void> Client::Prepare(std::string_view service, std::chrono::milliseconds timeout) {
  auto state = impl_->GetService(service);
  if (!state) return std::unexpected(state.error());
  (*state)->resolver->WaitReady(timeout);
  return {};
}

Result<Resolver*> Client::ResolverFor(std::string_view service) {
  auto state = impl_->GetService(service);
  if (!state) return std::unexpected(state.error());
  return (*state)->resolver.get();
}

ClientStats Client::stats() const {
  return ClientStats{impl_->calls.load(std::memory_order_relaxed),
                     impl_->attempts.load(std::memory_order_relaxed),
                     impl_->retried.load(std::memory_order_relaxed),
                     impl_->exhausted.load(std::memory_order_relaxed)};
}

Awaitable<Result<ClientResponse>> Client::Send(ClientRequest request) {
  Impl& impl = *impl_;
  auto started = Clock::now();
  const auto deadline = started + impl.options.deadline;
  auto first_attempt = started;  // when attempt 1 starts (one clock read for both)
  auto url = ParseUrl(request.url);
  if (!url) co_return std::unexpected(url.error());
  const bool retry_safe = request.retry_safe ? *request.retry_safe : IsRetrySafe(request);

  ServiceState* state = impl.direct.get();
  Resolver* resolver = nullptr;
  if (!url->direct) {
    auto found = impl.GetService(url->authority);
    if (!found) co_return std::unexpected(found.error());
    state = *found;
    resolver = state->resolver.get();
    // No answer from the registry yet: wait for it without blocking the
    // thread. Once there is one there always is (versions only grow), so
    // later calls skip the snapshot copy (two atomic operations).
    if (!state->resolved.load(std::memory_order_relaxed)) {
      if (resolver->snapshot()->version == 0) {
        co_await WaitForSnapshot(*resolver,
                                 std::min(deadline, Clock::now() + impl.options.resolve_timeout));
        first_attempt = Clock::now();  // the wait is not the first attempt's time
      }
      if (resolver->snapshot()->version != 0)
        state->resolved.store(true, std::memory_order_relaxed);
    }
  }
  impl.calls.fetch_add(1, std::memory_order_relaxed);
  const std::string wire = SerializeHead(request, *url, impl.options.user_agent);
  RetryBudget::Request in_flight(state->budget);
  std::optional<RetryBudget::Token> retry_token;

  auto finish = [&](Counter& outcome) {
    outcome.Inc();
    state->latency->Observe(std::chrono::duration<double>(Clock::now() - started).count());
  };

  std::vector<std::string> tried;  // instances that failed an attempt of this call
  // The last attempt's: its answer (if `result.answered`) is the call's,
  // else its error (code, and the message prefixed with the service).
  AttemptResult result;
  for (int attempt = 1; attempt <= impl.options.max_attempts; ++attempt) {
    EndpointPtr endpoint;
    if (resolver) {
      endpoint = resolver->Pick(PickContext{request.hash_key});
      if (endpoint && !tried.empty())
        endpoint =
            PickUntried(*resolver, PickContext{request.hash_key}, std::move(endpoint), tried);
      if (!endpoint) {
        if (attempt > 1) break;
        finish(state->request_counters.ForOutcome("no_instance"));
        co_return std::unexpected(NoInstance(*resolver, url->authority));
      }
    }

    EndpointStats* stats = endpoint ? endpoint->stats.get() : nullptr;
    if (stats) stats->active_requests.fetch_add(1, std::memory_order_relaxed);
    impl.attempts.fetch_add(1, std::memory_order_relaxed);
    result.Reset();
    // Not a conditional inside the co_await expression: GCC 12 miscompiles
    // that one (a crash on resumption).
    const std::string_view address = endpoint ? endpoint->address : url->authority;
    const auto attempt_started = attempt == 1 ? first_attempt : Clock::now();
    co_await impl.Attempt(wire, address, request, attempt_started,
                          std::min(deadline, attempt_started + impl.options.per_try_timeout),
                          result);
    if (stats) stats->active_requests.fetch_sub(1, std::memory_order_relaxed);
    retry_token.reset();  // the retry (if this was one) is no longer in flight
    // Successes, failures and outlier detection: one report per attempt. A
    // 503 with Retry-After is an instance shedding load (admission control):
    // it works, so it is not held against it (a flood would otherwise eject
    // every instance in turn); whether to retry is still the 503's rule.
    const bool shedding = result.answered && result.response.status == 503 &&
                          !result.response.Header("Retry-After").empty();
    if (endpoint) resolver->Report(*endpoint, shedding ? CallOutcome::kSuccess : result.outcome);

    const int status = result.answered ? result.response.status : 0;
    if (result.answered)
      state->attempt_counters.ForStatus(status).Inc();
    else
      state->attempt_counters
          .ForOutcome(result.code == ErrorCode::kMalformed &&
                              result.outcome == CallOutcome::kSuccess
                          ? std::string_view("too_large")
                          : CallOutcomeName(result.outcome))
          .Inc();

    if (result.answered) {
      result.response.attempts = attempt;
      if (endpoint) result.response.instance_id = endpoint->instance.id;
    } else {
      result.error.insert(0, std::string(url->authority) + ": ");
    }
    // A direct address has no other instance: only a connect failure is worth another try.
    bool connect_failure = result.outcome == CallOutcome::kConnectRefused ||
                           result.outcome == CallOutcome::kConnectFailed;
    bool may_retry = !url->direct || connect_failure;
    if (result.outcome == CallOutcome::kSuccess || !may_retry ||
        !ShouldRetry(result.outcome, status, retry_safe, attempt, impl.options.max_attempts)) {
      break;
    }
    auto pause = RetryBackoff(impl.retry_options, static_cast<std::uint32_t>(attempt + 1));
    if (Clock::now() + pause >= deadline) {
      if (!result.answered) result.error += " (deadline reached, not retried)";
      break;
    }
    if (pause.count() > 0) co_await Sleep(pause);
    // The budget counts retries in flight, so a retry takes its token when it
    // goes out (after the backoff) and gives it back when its attempt ends.
    if (auto token = state->budget.TryAcquire()) retry_token.emplace(std::move(*token));
    if (!retry_token) {
      impl.exhausted.fetch_add(1, std::memory_order_relaxed);
      state->budget_exhausted->Inc();
      if (!result.answered) {
        result.code = ErrorCode::kUnavailable;
        result.error = "retry budget of " + std::string(url->authority) +
                       " exhausted (too many retries in flight); last attempt: " + result.error;
      }
      break;
    }
    impl.retries->With({state->label, CallOutcomeName(result.outcome)}).Inc();
    impl.retried.fetch_add(1, std::memory_order_relaxed);
    if (endpoint) tried.push_back(endpoint->instance.id);
    log::Get().debug("retrying {} {} after {} (request id {})", request.method, request.url,
                     CallOutcomeName(result.outcome), request.request_id);
  }
  if (result.answered) {
    finish(state->request_counters.ForStatus(result.response.status));
    co_return std::move(result.response);
  }
  finish(state->request_counters.ForOutcome(FinalOutcomeLabel(result.code)));
  co_return std::unexpected(Error{result.code, std::move(result.error)});
}

}  // namespace disco::http
