#include "disco/http/client.h"

#include <algorithm>
#include <array>
#include <map>
#include <mutex>

#include "disco/detail/asio.h"
#include "disco/http/message.h"
#include "disco/metrics.h"
#include "disco/registry_url.h"
#include "disco/resolver.h"
#include "http/retry_policy.h"
#include "http/transport.h"
#include "util/fast_random.h"
#include "util/log.h"

namespace disco::http {

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using detail::AttemptResult;

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
    e.stats->Count(EndpointStats::kPicks);
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
  Impl(Registry& r, ClientOptions o)
      : registry(r),
        options(std::move(o)),
        transport(detail::TransportOptions{.max_idle_per_endpoint = options.max_idle_per_endpoint,
                                           .pool_idle_timeout = options.pool_idle_timeout,
                                           .response_limit = options.response_limit,
                                           .user_agent = options.user_agent}) {
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


  Registry& registry;
  ClientOptions options;
  RetryOptions retry_options;
  detail::Transport transport;
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
  const std::string wire = impl.transport.SerializeHead(request, url->authority, url->target);
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
    co_await impl.transport.RoundTrip(wire, request.body, request.method, address, attempt_started,
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
