#include "disco/http/client.h"

#include <map>
#include <mutex>
#include <unordered_map>

#include "disco/detail/asio.h"
#include "disco/http/message.h"
#include "disco/metrics.h"
#include "disco/registry_url.h"
#include "disco/resolver.h"
#include "http/retry_policy.h"
#include "util/log.h"

namespace disco::http {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

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
    std::unique_ptr<beast::tcp_stream> stream;
    Clock::time_point since;
  };

  std::unique_ptr<beast::tcp_stream> Take(const std::string& key,
                                          std::chrono::milliseconds max_idle) {
    std::lock_guard lock(mu_);
    auto it = pools_.find(key);
    if (it == pools_.end()) return nullptr;
    auto& idle = it->second;
    auto now = Clock::now();
    while (!idle.empty()) {
      Idle entry =
          std::move(idle.back());  // most recently used first: warmest, least likely closed
      idle.pop_back();
      if (now - entry.since < max_idle) return std::move(entry.stream);
    }
    return nullptr;
  }

  void Put(const std::string& key, std::unique_ptr<beast::tcp_stream> stream, std::size_t max) {
    std::lock_guard lock(mu_);
    auto& idle = pools_[key];
    if (idle.size() >= max) return;  // closes it
    idle.push_back(Idle{std::move(stream), Clock::now()});
  }

 private:
  void shutdown() override {
    std::lock_guard lock(mu_);
    pools_.clear();
  }

  std::mutex mu_;
  std::unordered_map<std::string, std::vector<Idle>> pools_;
};

bool IsIdempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" ||
         method == "DELETE";
}

struct ParsedUrl {
  std::string authority;  // service name or host:port
  std::string target;     // path and query, at least "/"
  bool direct = false;    // authority is host:port
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
  out.authority = std::string(url.substr(0, slash));
  out.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  if (out.target.front() == '?') out.target.insert(out.target.begin(), '/');
  if (out.authority.empty())
    return Fail(ErrorCode::kInvalidArgument, "URL has no host or service name");
  out.direct = out.authority.find(':') != std::string::npos;
  return out;
}

struct AttemptResult {
  CallOutcome outcome = CallOutcome::kSuccess;  // kServerError only for a 5xx answer
  bool answered = false;                        // `response` holds an HTTP answer
  std::string error;                            // when !answered
  ClientResponse response;
};

AttemptResult Failed(CallOutcome outcome, std::string error) {
  AttemptResult result;
  result.outcome = outcome;
  result.error = std::move(error);
  return result;
}

}  // namespace

std::string_view ClientResponse::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (HeaderNameEquals(k, name)) return v;
  }
  return {};
}

struct Client::Impl {
  Impl(Registry& r, ClientOptions o) : registry(r), options(std::move(o)) {
    if (options.max_attempts < 1) options.max_attempts = 1;
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
    latency =
        &metrics->HistogramFamily("http_client_request_duration_seconds",
                                  "Duration of outgoing HTTP calls, retries included", {"service"});
  }

  Result<Resolver*> GetResolver(std::string_view service) {
    std::lock_guard lock(mu);
    if (auto it = resolvers.find(service); it != resolvers.end()) return it->second.get();
    ResolverOptions resolver_options;
    resolver_options.policy = options.policy;
    resolver_options.outlier_detection = options.outlier_detection;
    auto made = Resolver::Make(registry, std::string(service), resolver_options);
    if (!made) return std::unexpected(made.error());
    Resolver* raw = made->get();
    resolvers.emplace(std::string(service), std::move(*made));
    return raw;
  }

  Awaitable<AttemptResult> Attempt(const ParsedUrl& url, const std::string& address,
                                   const ClientRequest& request, Clock::time_point deadline);

  Registry& registry;
  ClientOptions options;
  const std::string id = std::to_string(g_client_ids.fetch_add(1) + 1) + "|";
  MetricsRegistry* metrics;
  Family<Counter>* requests;
  Family<Counter>* attempts_family;
  Family<Counter>* retries;
  Family<Histogram>* latency;
  std::mutex mu;
  std::map<std::string, std::unique_ptr<Resolver>, std::less<>> resolvers;
};

Awaitable<AttemptResult> Client::Impl::Attempt(const ParsedUrl& url, const std::string& address,
                                               const ClientRequest& request,
                                               Clock::time_point deadline) {
  AttemptResult result;
  auto executor = co_await asio::this_coro::executor;
  auto& context = asio::query(executor, asio::execution::context);
  auto& pools = asio::use_service<PoolService>(context);
  const std::string pool_key = id + address;

  bhttp::request<bhttp::string_body> out;
  {
    auto verb =
        bhttp::string_to_verb(beast::string_view(request.method.data(), request.method.size()));
    if (verb == bhttp::verb::unknown)
      out.method_string(beast::string_view(request.method.data(), request.method.size()));
    else
      out.method(verb);
  }
  out.target(url.target);
  out.version(11);
  out.set(bhttp::field::host, url.authority);
  out.set(bhttp::field::user_agent, options.user_agent);
  if (!request.content_type.empty()) out.set(bhttp::field::content_type, request.content_type);
  if (!request.request_id.empty()) out.set("X-Request-Id", request.request_id);
  if (!request.authorization.empty()) out.set(bhttp::field::authorization, request.authorization);
  for (const auto& [name, value] : request.headers) out.set(name, value);
  out.body() = request.body;
  out.keep_alive(true);
  out.prepare_payload();

  boost::system::error_code ec;
  // A pooled connection may have been closed by the peer while idle; if it
  // fails before any answer byte, the request was not processed: use a fresh
  // connection (once) without calling it a retry.
  for (int round = 0; round < 2; ++round) {
    auto stream = round == 0 ? pools.Take(pool_key, options.pool_idle_timeout) : nullptr;
    bool reused = stream != nullptr;
    if (!stream) {
      auto host_port = ParseHostPort(address);
      if (!host_port)
        co_return Failed(CallOutcome::kConnectFailed, "bad address '" + address + "'");
      stream = std::make_unique<beast::tcp_stream>(executor);
      stream->expires_at(deadline);
      auto ip = asio::ip::make_address(host_port->host, ec);
      if (!ec) {
        co_await stream->async_connect(tcp::endpoint(ip, host_port->port),
                                       asio::redirect_error(asio::use_awaitable, ec));
      } else {
        tcp::resolver resolver(executor);
        auto endpoints =
            co_await resolver.async_resolve(host_port->host, std::to_string(host_port->port),
                                            asio::redirect_error(asio::use_awaitable, ec));
        if (!ec)
          co_await stream->async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
      }
      if (ec) {
        co_return Failed(
            ec == asio::error::connection_refused ? CallOutcome::kConnectRefused
                                                  : CallOutcome::kConnectFailed,
            "cannot connect to " + address + ": " +
                (ec == beast::error::timeout ? std::string("timed out") : ec.message()));
      }
      stream->socket().set_option(tcp::no_delay(true), ec);
    }
    stream->expires_at(deadline);
    co_await bhttp::async_write(*stream, out, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (reused && ec != beast::error::timeout) continue;
      co_return Failed(ec == beast::error::timeout ? CallOutcome::kTimeout : CallOutcome::kReset,
                       "sending to " + address + " failed: " + ec.message());
    }
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(options.response_limit);
    parser.header_limit(64 * 1024);
    co_await bhttp::async_read(*stream, buffer, parser,
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      bool nothing_read = !parser.got_some() && buffer.size() == 0;
      bool closed = ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
                    ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
      if (reused && nothing_read && closed) continue;
      if (ec == beast::error::timeout) {
        co_return Failed(CallOutcome::kTimeout,
                         address + " did not answer within the per-try timeout");
      }
      if (closed || ec == bhttp::error::partial_message) {
        co_return Failed(CallOutcome::kReset, address + " closed the connection: " + ec.message());
      }
      // Not HTTP we can read: counts against the endpoint, never retried.
      co_return Failed(CallOutcome::kServerError,
                       "bad answer from " + address + ": " + ec.message());
    }
    auto& message = parser.get();
    result.answered = true;
    result.response.status = static_cast<int>(message.result_int());
    if (result.response.status >= 500) result.outcome = CallOutcome::kServerError;
    result.response.address = address;
    result.response.headers.reserve(8);
    for (const auto& field : message) {
      result.response.headers.emplace_back(std::string(field.name_string()),
                                           std::string(field.value()));
    }
    bool keep = message.keep_alive() && buffer.size() == 0;
    result.response.body = std::move(message.body());
    if (keep) {
      stream->expires_never();
      pools.Put(pool_key, std::move(stream), options.max_idle_per_endpoint);
    } else {
      stream->socket().shutdown(tcp::socket::shutdown_both, ec);
    }
    co_return result;
  }
  co_return Failed(CallOutcome::kReset, address + " closed the connection");
}

Client::Client(Registry& registry, ClientOptions options)
    : impl_(std::make_unique<Impl>(registry, std::move(options))) {}

Client::~Client() = default;

Result<void> Client::Prepare(std::string_view service, std::chrono::milliseconds timeout) {
  auto resolver = impl_->GetResolver(service);
  if (!resolver) return std::unexpected(resolver.error());
  (*resolver)->WaitReady(timeout);
  return {};
}

Awaitable<Result<ClientResponse>> Client::Send(ClientRequest request) {
  Impl& impl = *impl_;
  auto started = Clock::now();
  auto url = ParseUrl(request.url);
  if (!url) co_return std::unexpected(url.error());
  const bool retry_safe = request.retry_safe.value_or(IsIdempotent(request.method));
  const std::string service_label = url->direct ? "direct" : url->authority;

  Resolver* resolver = nullptr;
  if (!url->direct) {
    auto found = impl.GetResolver(url->authority);
    if (!found) co_return std::unexpected(found.error());
    resolver = *found;
    if (resolver->snapshot()->version == 0) {
      // No answer from the registry yet: wait for it without blocking the thread.
      asio::steady_timer timer(co_await asio::this_coro::executor);
      auto until = Clock::now() + impl.options.resolve_timeout;
      while (resolver->snapshot()->version == 0 && resolver->LastError().empty() &&
             Clock::now() < until) {
        timer.expires_after(std::chrono::milliseconds(5));
        boost::system::error_code ec;
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
    }
  }

  auto finish = [&](std::string_view outcome) {
    impl.requests->With({service_label, outcome}).Inc();
    impl.latency->With({service_label})
        .Observe(std::chrono::duration<double>(Clock::now() - started).count());
  };

  std::string failed_instance;
  std::optional<ClientResponse> last_response;
  Error last_error{ErrorCode::kUnavailable, ""};
  for (int attempt = 1; attempt <= impl.options.max_attempts; ++attempt) {
    EndpointPtr endpoint;
    std::string address;
    if (resolver) {
      PickContext pick{request.hash_key};
      endpoint = resolver->Pick(pick);
      // Prefer another instance than the one that just failed.
      for (int i = 0; i < 3 && endpoint && !failed_instance.empty() &&
                      endpoint->instance.id == failed_instance;
           ++i) {
        endpoint = resolver->Pick(pick);
      }
      if (!endpoint) {
        std::string why = "no instance of " + url->authority + " is available";
        if (auto error = resolver->LastError(); !error.empty()) why += " (registry: " + error + ")";
        if (last_response) break;
        finish("no_instance");
        co_return Fail(ErrorCode::kUnavailable, why);
      }
      address = endpoint->address;
    } else {
      address = url->authority;
    }

    EndpointStats* stats = endpoint ? endpoint->stats.get() : nullptr;
    if (stats) stats->active_requests.fetch_add(1, std::memory_order_relaxed);
    AttemptResult result =
        co_await impl.Attempt(*url, address, request, Clock::now() + impl.options.per_try_timeout);
    if (stats) stats->active_requests.fetch_sub(1, std::memory_order_relaxed);
    // Successes, failures and outlier detection: one report per attempt.
    if (endpoint) resolver->Report(*endpoint, result.outcome);

    const int status = result.answered ? result.response.status : 0;
    std::string outcome =
        result.answered ? std::to_string(status) : std::string(CallOutcomeName(result.outcome));
    impl.attempts_family->With({service_label, outcome}).Inc();

    if (result.answered) {
      result.response.attempts = attempt;
      if (endpoint) result.response.instance_id = endpoint->instance.id;
      last_response = std::move(result.response);
    } else {
      last_response.reset();
      last_error = Error{
          result.outcome == CallOutcome::kTimeout ? ErrorCode::kTimeout : ErrorCode::kUnavailable,
          url->authority + ": " + result.error};
    }
    // A direct address has no other instance: only a connect failure is worth another try.
    bool connect_failure = result.outcome == CallOutcome::kConnectRefused ||
                           result.outcome == CallOutcome::kConnectFailed;
    bool may_retry = !url->direct || connect_failure;
    if (result.outcome != CallOutcome::kSuccess && may_retry &&
        ShouldRetry(result.outcome, status, retry_safe, attempt, impl.options.max_attempts)) {
      impl.retries->With({service_label, CallOutcomeName(result.outcome)}).Inc();
      if (endpoint) failed_instance = endpoint->instance.id;
      log::Get().debug("retrying {} {} after {} (request id {})", request.method, request.url,
                       CallOutcomeName(result.outcome), request.request_id);
      continue;
    }
    break;
  }
  if (last_response) {
    finish(std::to_string(last_response->status));
    co_return std::move(*last_response);
  }
  finish(last_error.code == ErrorCode::kTimeout ? "timeout" : "unavailable");
  co_return std::unexpected(last_error);
}

}  // namespace disco::http
