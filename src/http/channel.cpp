#include "disco/http/channel.h"

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "disco/detail/asio.h"
#include "disco/http/message.h"
#include "disco/metrics.h"
#include "disco/registry_url.h"
#include "disco/resolver.h"
#include "disco/retry.h"
#include "disco/tls.h"
#include "http/retry_policy.h"
#include "http/transport.h"
#include "util/log.h"

namespace disco::http {

namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using detail::AttemptResult;
using detail::ExchangeControl;
using detail::SetFailed;

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
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kReset:
      return "reset";
    case ErrorCode::kMalformed:
      return "bad_answer";
    default:
      return "unavailable";
  }
}

Error NoInstance(Resolver& resolver) {
  std::string why = "no instance of " + resolver.service() + " is available";
  if (auto error = resolver.LastError(); !error.empty()) why += " (registry: " + error + ")";
  return Error{ErrorCode::kUnavailable, std::move(why)};
}

CallOptions Normalized(CallOptions call) {
  if (call.max_attempts < 1) call.max_attempts = 1;
  if (call.deadline.count() <= 0) call.deadline = call.per_try_timeout * call.max_attempts;
  return call;
}

RetryOptions BackoffOf(const CallOptions& call) {
  RetryOptions retry;
  retry.backoff_base = call.backoff_base;
  retry.backoff_max = call.backoff_max;
  return retry;
}

// What makes two channels of one service the same service-level setup.
bool SameServiceSettings(const ClientOptions& a, const ClientOptions& b) {
  return a.policy == b.policy &&
         a.outlier_detection.has_value() == b.outlier_detection.has_value() &&
         a.retry_budget_percent == b.retry_budget_percent &&
         a.retry_budget_min == b.retry_budget_min;
}

}  // namespace

CallOptions CallOptionsOf(const ClientOptions& options) {
  return Normalized(CallOptions{.per_try_timeout = options.per_try_timeout,
                                .max_attempts = options.max_attempts,
                                .deadline = options.deadline,
                                .backoff_base = options.backoff_base,
                                .backoff_max = options.backoff_max});
}

// What the channels of one set share: the transport and the metric families.
struct Shared {
  Shared(Registry& r, const ClientOptions& options)
      : registry(r),
        tls(options.tls),
        transport(detail::TransportOptions{.max_idle_per_endpoint = options.max_idle_per_endpoint,
                                           .pool_idle_timeout = options.pool_idle_timeout,
                                           .response_limit = options.response_limit,
                                           .user_agent = options.user_agent}),
        metrics(options.metrics ? options.metrics : &MetricsRegistry::Default()),
        requests(&metrics->CounterFamily(
            "http_client_requests_total",
            "Outgoing HTTP calls by target service and outcome (status code or error), counting "
            "the final result of each call",
            {"service", "outcome"})),
        attempts(&metrics->CounterFamily("http_client_attempts_total",
                                         "Attempts of outgoing HTTP calls, retries included",
                                         {"service", "outcome"})),
        retries(&metrics->CounterFamily("http_client_retries_total",
                                        "Attempts retried on another instance",
                                        {"service", "reason"})),
        latency(&metrics->HistogramFamily("http_client_request_duration_seconds",
                                          "Duration of outgoing HTTP calls, retries included",
                                          {"service"})),
        budget_exhausted(&metrics->CounterFamily(
            "http_client_retry_budget_exhausted_total",
            "Retries wanted but refused because the retry budget was spent", {"service"})) {}

  // https:// URLs to host:port: the set's TLS settings, or else the system's
  // CAs (loaded on first use: most sets never need them).
  const tls::Config* DirectTls() const {
    if (tls) return tls.get();
    std::call_once(system_tls_once, [this] {
      auto loaded = tls::Config::Load(tls::Role::kClient, {});
      if (loaded) system_tls = std::move(*loaded);
    });
    return system_tls.get();
  }

  Registry& registry;
  const std::shared_ptr<tls::Config> tls;  // for every channel of the set (null: plain HTTP)
  mutable std::once_flag system_tls_once;
  mutable std::shared_ptr<tls::Config> system_tls;
  detail::Transport transport;
  MetricsRegistry* metrics;
  Family<Counter>* requests;
  Family<Counter>* attempts;
  Family<Counter>* retries;
  Family<Histogram>* latency;
  Family<Counter>* budget_exhausted;
};

struct Channel::Impl {
  Impl(const Shared& s, std::string name, const ClientOptions& o)
      : shared(s),
        label(std::move(name)),
        options(o),
        call(CallOptionsOf(o)),
        budget(o.retry_budget_percent, o.retry_budget_min),
        request_counters(*s.requests, label),
        attempt_counters(*s.attempts, label),
        latency(&s.latency->With({label})),
        budget_exhausted(&s.budget_exhausted->With({label})),
        tls_control{.tls = s.tls.get(), .identity = label} {}

  // `request` by value: a coroutine keeps it in its frame, so Send need not
  // be a coroutine of its own.
  // `direct_control`: a direct call's TLS (https:// URL), else null.
  Awaitable<Result<ClientResponse>> Call(ClientRequest request, std::string_view address,
                                         const CallOptions& call,
                                         const ExchangeControl* direct_control = nullptr);
  // How an attempt to `endpoint` goes: over TLS (the set's settings, the
  // service's identity), plain (null), or not at all (false: an instance
  // serving HTTPS and no TLS settings here; `result` says so).
  bool ControlFor(const Endpoint& endpoint, const ExchangeControl*& control,
                  AttemptResult& result) const;
  void Record(const Endpoint* endpoint, int attempt, std::string_view authority,
              AttemptResult& result);
  std::optional<Clock::duration> RetryPause(AttemptResult& result, int attempt, bool direct,
                                            bool retry_safe, const CallOptions& call,
                                            Clock::time_point deadline);
  std::optional<RetryBudget::Token> RetryToken(std::string_view authority, AttemptResult& result);
  // The call's final count and latency.
  void Finish(Counter& outcome, Clock::time_point started) {
    outcome.Inc();
    latency->Observe(std::chrono::duration<double>(Clock::now() - started).count());
  }

  const Shared& shared;
  const std::string label;  // the service, or "direct"
  const ClientOptions options;
  const CallOptions call;
  std::unique_ptr<Resolver> resolver;  // null for "direct"
  RetryBudget budget;
  StatusCounters request_counters;
  StatusCounters attempt_counters;
  Histogram* latency;
  Counter* budget_exhausted;
  const ExchangeControl tls_control;  // for discovered instances when the set has TLS settings
  std::atomic<bool> resolved{false};  // the resolver has had a snapshot from the registry
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> attempts{0};
  std::atomic<std::uint64_t> retried{0};
  std::atomic<std::uint64_t> exhausted{0};
};

Channel::Channel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Channel::~Channel() = default;

const std::string& Channel::service() const { return impl_->label; }

Resolver& Channel::resolver() { return *impl_->resolver; }

bool Channel::WaitReady(std::chrono::milliseconds timeout) {
  return impl_->resolver->WaitReady(timeout);
}

ClientStats Channel::stats() const {
  return ClientStats{impl_->calls.load(std::memory_order_relaxed),
                     impl_->attempts.load(std::memory_order_relaxed),
                     impl_->retried.load(std::memory_order_relaxed),
                     impl_->exhausted.load(std::memory_order_relaxed)};
}

Awaitable<Result<ClientResponse>> Channel::Send(ClientRequest request, const CallOptions* call) {
  return impl_->Call(std::move(request), {}, call ? *call : impl_->call);
}

Awaitable<Result<ClientResponse>> Channel::SendTo(ClientRequest request, std::string address,
                                                  bool tls) {
  // A coroutine of its own: `address` and `control` live in this frame while Call runs.
  ExchangeControl control;
  if (tls) {
    control.tls = impl_->shared.DirectTls();
    if (control.tls == nullptr)
      co_return std::unexpected(Error{ErrorCode::kUnavailable,
                                      "https://" + address +
                                          ": the system's CA certificates could not be loaded"});
  }
  const ExchangeControl* direct_control = tls ? &control : nullptr;
  co_return co_await impl_->Call(std::move(request), address, impl_->call, direct_control);
}

bool Channel::Impl::ControlFor(const Endpoint& endpoint, const ExchangeControl*& control,
                               AttemptResult& result) const {
  if (tls_control.tls) {
    control = &tls_control;
    return true;
  }
  control = nullptr;
  if (!endpoint.tls) return true;
  SetFailed(result, CallOutcome::kConnectFailed,
            "the instance " + endpoint.instance.id + " at " + endpoint.address +
                " serves HTTPS (scheme=https in its registration) and this caller has no TLS "
                "settings (ClientOptions::tls; the services' --tls-ca)");
  return false;
}

// After an attempt: its outcome to the resolver (successes, failures,
// outlier detection), its metric, and the answer or error labelled with
// what was called. A 503 with Retry-After is an instance shedding load
// (admission control): it works, so it is not held against it (a flood
// would otherwise eject every instance in turn); whether to retry is still
// the 503's rule.
void Channel::Impl::Record(const Endpoint* endpoint, int attempt, std::string_view authority,
                           AttemptResult& result) {
  const bool shedding = result.answered && result.response.status == 503 &&
                        !result.response.Header("Retry-After").empty();
  if (endpoint) resolver->Report(*endpoint, shedding ? CallOutcome::kSuccess : result.outcome);
  if (result.answered) {
    attempt_counters.ForStatus(result.response.status).Inc();
    result.response.attempts = attempt;
    if (endpoint) result.response.instance_id = endpoint->instance.id;
    return;
  }
  attempt_counters
      .ForOutcome(result.code == ErrorCode::kMalformed && result.outcome == CallOutcome::kSuccess
                      ? std::string_view("too_large")
                      : CallOutcomeName(result.outcome))
      .Inc();
  result.error.insert(0, std::string(authority) + ": ");
}

// Whether the call goes on after an attempt, and the pause before the next
// one; nullopt: stop (when the deadline is why, the error says so).
std::optional<Clock::duration> Channel::Impl::RetryPause(AttemptResult& result, int attempt,
                                                         bool direct, bool retry_safe,
                                                         const CallOptions& call,
                                                         Clock::time_point deadline) {
  const int status = result.answered ? result.response.status : 0;
  // A direct address has no other instance: only a connect failure is worth another try.
  const bool connect_failure = result.outcome == CallOutcome::kConnectRefused ||
                               result.outcome == CallOutcome::kConnectFailed;
  if (result.outcome == CallOutcome::kSuccess || (direct && !connect_failure) ||
      !ShouldRetry(result.outcome, status, retry_safe, attempt, call.max_attempts)) {
    return std::nullopt;
  }
  const auto pause = RetryBackoff(BackoffOf(call), static_cast<std::uint32_t>(attempt + 1));
  if (Clock::now() + pause >= deadline) {
    if (!result.answered) result.error += " (deadline reached, not retried)";
    return std::nullopt;
  }
  return pause;
}

// The retry budget's token for the next attempt, or the budget's refusal
// recorded in `result` and the metrics.
std::optional<RetryBudget::Token> Channel::Impl::RetryToken(std::string_view authority,
                                                            AttemptResult& result) {
  RetryBudget::Refusal why{};
  if (auto token = budget.TryAcquire(why)) {
    shared.retries->With({label, CallOutcomeName(result.outcome)}).Inc();
    retried.fetch_add(1, std::memory_order_relaxed);
    return token;
  }
  exhausted.fetch_add(1, std::memory_order_relaxed);
  budget_exhausted->Inc();
  if (!result.answered) {
    result.code = ErrorCode::kUnavailable;
    // The figures say whether the share or the minimum was the limit.
    result.error = "retry budget of " + std::string(authority) + " exhausted (" +
                   std::to_string(why.retries_in_flight) + " retries in flight, at most " +
                   std::to_string(why.limit) + " for " + std::to_string(why.requests_in_flight) +
                   " calls in flight); last attempt: " + result.error;
  }
  return std::nullopt;
}

// One call: an attempt per pick until one succeeds or the retry rule, the
// deadline or the budget says stop. `address` non-empty: a direct call
// (this is the set's "direct" channel, without a resolver).
Awaitable<Result<ClientResponse>> Channel::Impl::Call(ClientRequest request,
                                                      std::string_view address,
                                                      const CallOptions& call,
                                                      const ExchangeControl* direct_control) {
  const auto started = Clock::now();
  const auto deadline = started + call.deadline;
  auto first_attempt = started;  // when attempt 1 starts (one clock read for both)
  const bool retry_safe = request.retry_safe ? *request.retry_safe : IsRetrySafe(request);
  const bool direct = !address.empty();

  // No answer from the registry yet: wait for it without blocking the
  // thread. Once there is one there always is (versions only grow), so later
  // calls skip the snapshot copy (two atomic operations).
  if (!direct && !resolved.load(std::memory_order_relaxed)) {
    if (resolver->snapshot()->version == 0) {
      co_await WaitForSnapshot(*resolver,
                               std::min(deadline, Clock::now() + options.resolve_timeout));
      first_attempt = Clock::now();  // the wait is not the first attempt's time
    }
    if (resolver->snapshot()->version != 0) resolved.store(true, std::memory_order_relaxed);
  }
  calls.fetch_add(1, std::memory_order_relaxed);
  const std::string_view authority = direct ? address : std::string_view(label);
  const std::string wire = shared.transport.SerializeHead(request, authority, request.target);
  RetryBudget::Request in_flight(budget);
  std::optional<RetryBudget::Token> retry_token;

  std::vector<std::string> tried;  // instances that failed an attempt of this call
  PickContext pick{.hash_key = request.hash_key};
  // The last attempt's: its answer (if `result.answered`) is the call's,
  // else its error (code, and the message prefixed with the service).
  AttemptResult result;
  for (int attempt = 1; attempt <= call.max_attempts; ++attempt) {
    EndpointPtr endpoint;
    if (!direct) {
      pick.tried = tried;
      endpoint = resolver->Pick(pick);
      if (!endpoint) {
        if (attempt > 1) break;
        Finish(request_counters.ForOutcome("no_instance"), started);
        co_return std::unexpected(NoInstance(*resolver));
      }
    }

    EndpointStats* stats = endpoint ? endpoint->stats.get() : nullptr;
    if (stats) stats->active_requests.fetch_add(1, std::memory_order_relaxed);
    attempts.fetch_add(1, std::memory_order_relaxed);
    result.Reset();
    // Not a conditional inside the co_await expression: GCC 12 miscompiles
    // that one (a crash on resumption).
    const std::string_view to = endpoint ? std::string_view(endpoint->address) : address;
    const auto attempt_started = attempt == 1 ? first_attempt : Clock::now();
    const auto attempt_deadline = std::min(deadline, attempt_started + call.per_try_timeout);
    const ExchangeControl* control = direct_control;
    if (!endpoint || ControlFor(*endpoint, control, result)) {
      co_await shared.transport.RoundTrip(wire, request.body, request.method, to,
                                          attempt_started, attempt_deadline, result, control);
    }
    if (stats) stats->active_requests.fetch_sub(1, std::memory_order_relaxed);
    retry_token.reset();  // the retry (if this was one) is no longer in flight
    Record(endpoint.get(), attempt, authority, result);

    const auto pause = RetryPause(result, attempt, direct, retry_safe, call, deadline);
    if (!pause) break;
    if (pause->count() > 0) co_await Sleep(*pause);
    // The budget counts retries in flight, so a retry takes its token when it
    // goes out (after the backoff) and gives it back when its attempt ends.
    auto token = RetryToken(authority, result);
    if (!token) break;
    retry_token.emplace(std::move(*token));
    if (endpoint) tried.push_back(endpoint->instance.id);
    log::Get().debug("retrying {} {}{} after {} (request id {})", request.method, authority,
                     request.target, CallOutcomeName(result.outcome), request.request_id);
  }
  if (result.answered) {
    Finish(request_counters.ForStatus(result.response.status), started);
    co_return std::move(result.response);
  }
  Finish(request_counters.ForOutcome(FinalOutcomeLabel(result.code)), started);
  co_return std::unexpected(Error{result.code, std::move(result.error)});
}

struct ChannelSet::Impl {
  Impl(Registry& registry, ClientOptions o) : options(std::move(o)), shared(registry, options) {
    direct = NewChannel("direct", options);
  }

  std::unique_ptr<Channel> NewChannel(std::string label, const ClientOptions& o) const {
    return std::unique_ptr<Channel>(
        new Channel(std::make_unique<Channel::Impl>(shared, std::move(label), o)));
  }

  const ClientOptions options;
  const Shared shared;
  std::unique_ptr<Channel> direct;
  mutable std::mutex mu;
  std::map<std::string, std::unique_ptr<Channel>, std::less<>> channels;
};

ChannelSet::ChannelSet(Registry& registry, ClientOptions options)
    : impl_(std::make_unique<Impl>(registry, std::move(options))) {}

ChannelSet::~ChannelSet() = default;

const ClientOptions& ChannelSet::options() const { return impl_->options; }

Channel& ChannelSet::direct() { return *impl_->direct; }

Result<Channel*> ChannelSet::Get(std::string_view service) { return Get(service, impl_->options); }

Result<Channel*> ChannelSet::Get(std::string_view service, const ClientOptions& options) {
  std::lock_guard lock(impl_->mu);
  if (auto it = impl_->channels.find(service); it != impl_->channels.end()) {
    const ClientOptions& have = it->second->impl_->options;
    if (!SameServiceSettings(have, options)) {
      return Fail(ErrorCode::kInvalidArgument,
                  std::string(service) + " already has a channel with policy " + have.policy +
                      ", outlier detection " + (have.outlier_detection ? "on" : "off") +
                      ", retry budget " + std::to_string(have.retry_budget_percent) + "% (min " +
                      std::to_string(have.retry_budget_min) + "); asked for policy " +
                      options.policy + ", outlier detection " +
                      (options.outlier_detection ? "on" : "off") + ", retry budget " +
                      std::to_string(options.retry_budget_percent) + "% (min " +
                      std::to_string(options.retry_budget_min) +
                      "): a service has one balancer and one retry budget per process");
    }
    return it->second.get();
  }
  if (impl_->channels.size() >= impl_->options.max_services) {
    return Fail(ErrorCode::kUnavailable,
                "cannot watch " + std::string(service) + ": this client already watches " +
                    std::to_string(impl_->channels.size()) +
                    " services (ClientOptions::max_services)");
  }
  ResolverOptions resolver_options;
  resolver_options.policy = options.policy;
  resolver_options.outlier_detection = options.outlier_detection;
  resolver_options.metrics = impl_->shared.metrics;
  auto made = Resolver::Make(impl_->shared.registry, std::string(service), resolver_options);
  if (!made) return std::unexpected(made.error());
  auto channel = impl_->NewChannel(std::string(service), options);
  channel->impl_->resolver = std::move(*made);
  Channel* raw = channel.get();
  impl_->channels.emplace(std::string(service), std::move(channel));
  return raw;
}

ClientStats ChannelSet::stats() const {
  ClientStats total;
  auto add = [&total](const Channel& channel) {
    auto s = channel.stats();
    total.calls += s.calls;
    total.attempts += s.attempts;
    total.retries += s.retries;
    total.budget_exhausted += s.budget_exhausted;
  };
  std::lock_guard lock(impl_->mu);
  add(*impl_->direct);
  for (const auto& [name, channel] : impl_->channels) add(*channel);
  return total;
}

}  // namespace disco::http
