#include "gateway/proxy.h"

#include <algorithm>
#include <array>
#include <variant>

#include "common/admission.h"
#include "common/auth.h"
#include "common/logging.h"
#include "disco/http/message.h"
#include "disco/resolver.h"

namespace disco::gateway {
namespace {

using http::HeaderNameEquals;

// Hop-by-hop headers (RFC 9110 7.6.1, plus the old Proxy-Connection):
// meaningful for one connection only, never forwarded.
constexpr std::array<std::string_view, 9> kHopByHop = {"Connection",
                                                       "Keep-Alive",
                                                       "Proxy-Authenticate",
                                                       "Proxy-Authorization",
                                                       "Proxy-Connection",
                                                       "TE",
                                                       "Trailer",
                                                       "Transfer-Encoding",
                                                       "Upgrade"};

bool IsHopByHop(std::string_view name) {
  for (auto h : kHopByHop) {
    if (HeaderNameEquals(name, h)) return true;
  }
  return false;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether `name` is listed in a Connection header value ("close, X-Foo").
bool NamedByConnection(std::string_view connection, std::string_view name) {
  while (!connection.empty()) {
    auto comma = connection.find(',');
    auto token = Trim(connection.substr(0, comma));
    if (!token.empty() && HeaderNameEquals(token, name)) return true;
    if (comma == std::string_view::npos) break;
    connection.remove_prefix(comma + 1);
  }
  return false;
}

// The values of every Connection header among `headers`, joined by commas:
// the names NamedByConnection() looks in. Read once per message (empty, no
// allocation, when there is none).
template <class Headers>
std::string ConnectionNames(const Headers& headers) {
  std::string names;
  for (const auto& [key, value] : headers) {
    if (!HeaderNameEquals(key, "Connection")) continue;
    if (!names.empty()) names += ',';
    names += value;
  }
  return names;
}

// Request headers the gateway sets itself (or the transport recomputes).
bool IsOwnRequestHeader(std::string_view name) {
  return HeaderNameEquals(name, "Host") || HeaderNameEquals(name, "Content-Length") ||
         HeaderNameEquals(name, "Expect") || HeaderNameEquals(name, "X-Request-Id") ||
         HeaderNameEquals(name, "traceparent") || HeaderNameEquals(name, "X-Forwarded-For") ||
         HeaderNameEquals(name, "X-Forwarded-Host") ||
         HeaderNameEquals(name, "X-Forwarded-Proto") ||
         HeaderNameEquals(name, service::kClientAddressHeader) ||
         HeaderNameEquals(name, service::kRequestTimeoutHeader);
}

http::Response RateLimited(std::string_view what, std::string_view client,
                           std::chrono::milliseconds retry_after) {
  auto seconds = std::max<std::int64_t>(1, (retry_after.count() + 999) / 1000);
  auto response = http::Response::Error(429, "rate_limited",
                                        "too many requests" + std::string(what) + " from " +
                                            std::string(client) + "; retry in " +
                                            std::to_string(seconds) + " s");
  response.headers.emplace_back("Retry-After", std::to_string(seconds));
  return response;
}

bool IsOwnResponseHeader(std::string_view name) {
  return HeaderNameEquals(name, "Content-Length") || HeaderNameEquals(name, "Content-Type") ||
         HeaderNameEquals(name, "X-Request-Id");
}

http::Response UpstreamError(int status, std::string_view code, const std::string& message,
                             const http::Request& request) {
  return http::Response::Error(status, code, message + " (request id " + request.request_id + ")");
}

}  // namespace

Proxy::Proxy(GatewayConfig config, const service::JwtCodec* jwt, MetricsRegistry& metrics)
    : config_(std::move(config)), jwt_(jwt), metrics_(&metrics) {
  refused_ = &metrics.CounterFamily(
      "gateway_refused_total",
      "Requests the gateway answered itself without calling upstream, by reason",
      {"route", "reason"});
}

Result<std::unique_ptr<Proxy>> Proxy::Make(Registry& registry, GatewayConfig config,
                                           const service::JwtCodec* jwt, MetricsRegistry* metrics) {
  MetricsRegistry& m = metrics ? *metrics : MetricsRegistry::Default();
  for (const auto& route : config.routes) {
    if (route.auth && jwt == nullptr) {
      return Fail(
          ErrorCode::kInvalidArgument,
          "route " + route.prefix + " checks JWTs at the edge, but no JWT secret was given");
    }
  }
  std::unique_ptr<Proxy> proxy(new Proxy(std::move(config), jwt, m));
  http::ClientOptions defaults;
  defaults.outlier_detection = proxy->config_.outlier_detection;
  defaults.response_limit = proxy->config_.response_limit;
  defaults.max_idle_per_endpoint = proxy->config_.upstream_pool.max_idle_per_endpoint;
  defaults.pool_idle_timeout = proxy->config_.upstream_pool.idle_timeout;
  defaults.user_agent = "disco-gateway";
  defaults.tls = proxy->config_.upstream_tls;
  defaults.metrics = &m;
  proxy->channels_ = std::make_unique<http::ChannelSet>(registry, std::move(defaults));
  const auto& rl = proxy->config_.rate_limit;
  if (rl.requests_per_second > 0) {
    proxy->limiter_ = std::make_unique<RateLimiter>(rl.requests_per_second, rl.burst);
  }
  for (const auto& route : proxy->config_.routes) {
    auto item = std::make_unique<Route>();
    item->config = route;
    item->pattern = (route.prefix == "/" ? std::string() : route.prefix) + "/{rest...}";
    if (route.rate_limit) {
      item->limiter = std::make_unique<RateLimiter>(route.rate_limit->requests_per_second,
                                                    route.rate_limit->burst);
    }
    item->timeout_ms = std::to_string(std::min(route.per_try_timeout, route.deadline).count());
    http::ClientOptions options = proxy->channels_->options();
    options.policy = route.policy;
    options.per_try_timeout = route.per_try_timeout;
    options.max_attempts = route.max_attempts;
    options.deadline = route.deadline;
    options.retry_budget_percent = route.retry_budget_percent;
    options.retry_budget_min = route.retry_budget_min;
    auto channel = proxy->channels_->Get(route.service, options);
    if (!channel) {
      return Fail(ErrorCode::kInvalidArgument,
                  "route " + route.prefix + ": " + channel.error().message);
    }
    item->channel = *channel;
    item->call = http::CallOptionsOf(options);
    proxy->routes_.push_back(std::move(item));
  }
  return proxy;
}

void Proxy::AddRoutes(http::Router& router) {
  for (auto& route : routes_) {
    Route* r = route.get();
    router.Add("*", r->pattern, [this, r](http::Request& request) { return Handle(*r, request); });
  }
}

void Proxy::Prepare(std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  for (auto& route : routes_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    route->channel->WaitReady(std::max(left, std::chrono::milliseconds(0)));
  }
}

ProxyTotals Proxy::totals() const {
  ProxyTotals totals;
  totals.requests = requests_.load(std::memory_order_relaxed);
  totals.rate_limited = rate_limited_.load(std::memory_order_relaxed);
  totals.unauthorized = unauthorized_.load(std::memory_order_relaxed);
  std::vector<const http::Channel*> counted;  // a shared channel is counted once
  for (const auto& route : routes_) {
    if (std::ranges::find(counted, route->channel) != counted.end()) continue;
    counted.push_back(route->channel);
    auto stats = route->channel->stats();
    totals.retries += stats.retries;
    totals.budget_exhausted += stats.budget_exhausted;
    if (auto* detector = route->channel->resolver().outlier_detector())
      totals.ejections += detector->ejections_total();
  }
  return totals;
}

std::string_view Proxy::ClientOf(const http::Request& request) const {
  // Who the client is: the peer, or (behind a trusted proxy) the address
  // that proxy appended last to X-Forwarded-For.
  std::string_view forwarded_for = request.Header("X-Forwarded-For");
  std::string_view client = request.remote_address;
  if (config_.rate_limit.trust_forwarded_for && !forwarded_for.empty()) {
    auto comma = forwarded_for.rfind(',');
    auto last =
        Trim(comma == std::string_view::npos ? forwarded_for : forwarded_for.substr(comma + 1));
    if (!last.empty()) client = last;
  }
  return client;
}

std::optional<http::Response> Proxy::LocalLimit(Route& route, std::string_view client) {
  // The route's own limit first: a request it refuses takes no token from
  // the client's global bucket.
  if (route.limiter) {
    auto decision = route.limiter->Acquire(client);
    if (!decision.allowed) {
      rate_limited_.fetch_add(1, std::memory_order_relaxed);
      refused_->With({route.pattern, "route_rate_limited"}).Inc();
      return RateLimited(" to " + route.config.prefix, client, decision.retry_after);
    }
  }
  if (limiter_) {
    auto decision = limiter_->Acquire(client);
    if (!decision.allowed) {
      rate_limited_.fetch_add(1, std::memory_order_relaxed);
      refused_->With({route.pattern, "rate_limited"}).Inc();
      return RateLimited("", client, decision.retry_after);
    }
  }
  return std::nullopt;
}

std::variant<http::Response, http::ClientRequest> Proxy::Forward(Route& route,
                                                                 http::Request& request,
                                                                 bool limited,
                                                                 service::JwtClaims* claims) {
  requests_.fetch_add(1, std::memory_order_relaxed);
  const RouteConfig& config = route.config;
  std::string_view forwarded_for = request.Header("X-Forwarded-For");
  std::string_view client = ClientOf(request);
  if (!limited) {
    if (auto refusal = LocalLimit(route, client)) return std::move(*refusal);
  }
  if (config.auth) {
    auto verified = service::Authenticate(request, *jwt_);
    if (auto* refusal = std::get_if<http::Response>(&verified)) {
      unauthorized_.fetch_add(1, std::memory_order_relaxed);
      refused_->With({route.pattern, "unauthorized"}).Inc();
      return std::move(*refusal);
    }
    if (claims != nullptr) *claims = std::move(std::get<service::JwtClaims>(verified));
  }

  http::ClientRequest upstream;
  upstream.method = std::string(request.method);
  if (config.strip_prefix && config.prefix != "/") {
    std::string_view rest = request.target.substr(config.prefix.size());
    if (rest.empty() || rest.front() == '?') upstream.target = '/';
    upstream.target += rest;
  } else {
    upstream.target = request.target;
  }
  // The incoming request's headers are borrowed, not copied: it outlives
  // the upstream call (Handle awaits it).
  auto& headers = upstream.borrowed_headers;
  headers.reserve(request.headers.size() + 5);
  std::string_view host;
  const std::string connection = ConnectionNames(request.headers);
  for (const auto& [name, value] : request.headers) {
    if (HeaderNameEquals(name, "Host")) host = value;
    if (IsHopByHop(name) || IsOwnRequestHeader(name)) continue;
    // A trace the gateway did not join (no valid traceparent) takes no
    // tracestate along (W3C Trace Context, 3.3.1).
    if (request.parent_span_id.empty() && HeaderNameEquals(name, "tracestate")) continue;
    if (!connection.empty() && NamedByConnection(connection, name)) continue;
    headers.emplace_back(name, value);
  }
  if (forwarded_for.empty()) {
    headers.emplace_back("X-Forwarded-For", request.remote_address);
  } else {
    std::string chain(forwarded_for);
    chain += ", ";
    chain += request.remote_address;
    upstream.headers.emplace_back("X-Forwarded-For", std::move(chain));
  }
  if (!host.empty()) headers.emplace_back("X-Forwarded-Host", host);
  headers.emplace_back("X-Forwarded-Proto", request.secure ? "https" : "http");
  // Views of the request and the route: both outlive the upstream call.
  headers.emplace_back(service::kClientAddressHeader, client);
  headers.emplace_back(service::kRequestTimeoutHeader, route.timeout_ms);
  upstream.request_id = request.request_id;
  upstream.traceparent = request.traceparent;
  upstream.body = std::move(request.body);
  // retry_safe stays unset: the client's one rule decides from the method and
  // the headers as forwarded (a key the upstream never sees makes nothing safe).

  return upstream;
}

http::Response Proxy::Answer(const Route& route, const http::Request& request,
                             Result<http::ClientResponse>& answer) {
  const RouteConfig& config = route.config;
  if (!answer) {
    const Error& error = answer.error();
    service::LogRequest(request, spdlog::level::warn, "gateway {} {} → {} failed: {}",
                        request.method, request.path, config.service, error.ToString());
    switch (error.code) {
      case ErrorCode::kTimeout:
        return UpstreamError(504, "upstream_timeout",
                             config.service + " did not answer in time: " + error.message, request);
      case ErrorCode::kMalformed:
      case ErrorCode::kReset:
        return UpstreamError(502, "bad_gateway",
                             config.service + " broke the exchange: " + error.message, request);
      default:
        return UpstreamError(503, "upstream_unavailable",
                             "no healthy instance of " + config.service +
                                 " could take the request: " + error.message,
                             request);
    }
  }

  // The upstream's headers and body are moved, not copied: the header list
  // is filtered in place and handed over whole.
  http::Response response{.status = answer->status, .content_type = {}};
  response.body = std::move(answer->body);
  auto& headers = answer->headers;
  // Read before the filtering below moves entries over the Connection headers.
  const std::string connection = ConnectionNames(headers);
  bool have_type = false;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < headers.size(); ++i) {
    auto& header = headers[i];
    if (!have_type && HeaderNameEquals(header.first, "Content-Type")) {
      response.content_type = std::move(header.second);  // the first one, as Header() would give
      have_type = true;
      continue;
    }
    if (IsHopByHop(header.first) || IsOwnResponseHeader(header.first)) continue;
    if (!connection.empty() && NamedByConnection(connection, header.first)) continue;
    if (kept != i) headers[kept] = std::move(header);
    ++kept;
  }
  headers.resize(kept);
  response.headers = std::move(headers);
  return response;
}

void Proxy::UseSharedState(SharedRateLimiter* limiter, service::TokenRevocations* revocations) {
  shared_limiter_ = limiter;
  revocations_ = revocations != nullptr && revocations->enabled() ? revocations : nullptr;
}

http::Awaitable<std::optional<http::Response>> Proxy::SharedLimit(Route& route,
                                                                  const http::Request& request) {
  std::array<SharedRateLimiter::Bucket, 2> buckets;
  std::size_t n = 0;
  // In the local limiters' order: the route's own, then the global one.
  if (const auto& own = route.config.rate_limit) {
    buckets[n++] = {route.pattern, own->requests_per_second, own->burst};
  }
  const auto& global = config_.rate_limit;
  if (limiter_) buckets[n++] = {"global", global.requests_per_second, global.burst};
  if (n == 0) co_return std::nullopt;
  const std::string_view client = ClientOf(request);
  auto verdict =
      co_await shared_limiter_->Acquire(std::string(client), std::span(buckets.data(), n));
  if (!verdict) co_return LocalLimit(route, client);  // Redis could not answer
  if (verdict->refused < 0) co_return std::nullopt;
  rate_limited_.fetch_add(1, std::memory_order_relaxed);
  const bool by_route = route.config.rate_limit && verdict->refused == 0;
  refused_->With({route.pattern, by_route ? "route_rate_limited" : "rate_limited"}).Inc();
  co_return RateLimited(by_route ? " to " + route.config.prefix : std::string(), client,
                        verdict->retry_after);
}

http::Awaitable<http::Response> Proxy::HandleShared(Route& route, http::Request& request) {
  if (shared_limiter_ != nullptr) {
    auto refusal = co_await SharedLimit(route, request);
    if (refusal) co_return std::move(*refusal);
  }
  service::JwtClaims claims;
  auto forward = Forward(route, request, shared_limiter_ != nullptr, &claims);
  if (auto* refusal = std::get_if<http::Response>(&forward)) co_return std::move(*refusal);
  if (revocations_ != nullptr && !claims.jti.empty()) {
    auto verdict = co_await revocations_->Check(claims);
    if (verdict != service::TokenRevocations::Verdict::kValid) {
      unauthorized_.fetch_add(1, std::memory_order_relaxed);
      refused_
          ->With({route.pattern, verdict == service::TokenRevocations::Verdict::kRevoked
                                     ? "revoked"
                                     : "revocation_unavailable"})
          .Inc();
      co_return service::RevocationRefusal(verdict, request);
    }
  }
  auto answer =
      co_await route.channel->Send(std::move(std::get<http::ClientRequest>(forward)), &route.call);
  co_return Answer(route, request, answer);
}

http::Awaitable<http::Response> Proxy::Handle(Route& route, http::Request& request) {
  // Without Redis the request costs no more than before: no extra coroutine.
  if (shared_limiter_ != nullptr || revocations_ != nullptr)
    co_return co_await HandleShared(route, request);
  auto forward = Forward(route, request);
  if (auto* refusal = std::get_if<http::Response>(&forward)) co_return std::move(*refusal);
  auto answer =
      co_await route.channel->Send(std::move(std::get<http::ClientRequest>(forward)), &route.call);
  co_return Answer(route, request, answer);
}

}  // namespace disco::gateway
