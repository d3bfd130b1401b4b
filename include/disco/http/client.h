// Client: a discovery-aware HTTP/1.1 client for calls between services.
//
//   http::ClientRequest req;
//   req.url = "http://user-service/api/users/me";
//   req.request_id = incoming.request_id;            // propagate
//   req.traceparent = incoming.traceparent;          // the called server joins the trace
//   req.authorization = incoming.Header("Authorization");
//   auto res = co_await client.Send(std::move(req));
//
// "http://<service>/..." is resolved through disco: the client is a thin
// layer over a ChannelSet (disco/http/channel.h), one Channel per service
// (made on first use and kept for the client's life: one Resolver, one
// retry budget), a balancer pick per attempt, and per-endpoint keep-alive
// connection pools. "http://host:port/..." (an authority with a port) goes
// straight to that address, without retries on another instance. Code that
// calls one service many times (a proxy route) holds its Channel instead
// and skips the URL.
//
// Each attempt has its own deadline (connect + write + read), and the whole
// call an overall deadline that no attempt starts or runs past. A failed
// attempt is retried on another instance when the retry policy allows:
// connect errors always (the request never left), and for retry-safe
// requests (idempotent methods unless said otherwise) also resets, timeouts
// and 503 answers. Retries wait a fully jittered exponential backoff and need
// a token from the service's retry budget (disco/retry.h: at most a share of
// the requests in flight, Envoy's rule), so a failing service is not flooded.
// The decision lives in one function (src/http/retry_policy.h). A pooled
// connection that turns out to be closed by the peer before any answer byte
// is replaced by a fresh one transparently (not counted as a retry). A retry
// goes to an instance the call has not tried yet while there is one: the
// balancer's pick carries the instances tried (PickContext::tried).
//
// Every attempt updates the endpoint's EndpointStats: active_requests while in
// flight (least_request reads it), and afterwards the outcome goes to
// Resolver::Report (successes, failures, outlier detection); a 5xx answer
// counts as a failure, except a 503 with Retry-After: that instance is
// shedding load (it works), and ejecting it would only push its load onto
// the others.
//
// Metrics (into ClientOptions::metrics): calls and attempts by service and
// outcome, retries by reason, retry-budget exhaustion, call latency; the
// resolvers add picks per endpoint, ejections and staleness.
//
// Thread safety: Send() may be called from coroutines on any io_context and
// thread at once (an Awaitable runs on the io_context's own executor: on a
// strand over it, Send() does not compile).
// Connections are pooled per (io_context, endpoint), so a connection is only
// ever used by the thread that created it. The registry must outlive the
// client; the client must outlive every Send() in progress.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "disco/error.h"
#include "disco/http/awaitable.h"
#include "disco/outlier.h"
#include "disco/registry.h"

namespace disco {
class MetricsRegistry;
class Resolver;
namespace tls {
class Config;
}  // namespace tls
}  // namespace disco

namespace disco::http {

struct ClientOptions {
  std::string policy = "round_robin";  // balancer policy for every service
  // Each service's balancer is wrapped in outlier detection (disco/outlier.h),
  // fed with the outcome of every attempt. On by default; nullopt: off.
  std::optional<OutlierOptions> outlier_detection = OutlierOptions{};
  std::chrono::milliseconds per_try_timeout{2000};  // connect + send + receive of one attempt
  // Attempts per call, the first included (1 = no retry). Each retry goes to
  // an instance this call has not tried yet while there is one.
  int max_attempts = 3;
  // Bound on the whole call, retries and backoff included; no attempt starts
  // or runs past it. Zero: per_try_timeout × max_attempts.
  std::chrono::milliseconds deadline{0};
  // Pause before retry n (n = 2 for the first retry): uniform in
  // [0, min(backoff_max, backoff_base × 2^(n-2))].
  std::chrono::milliseconds backoff_base{25};
  std::chrono::milliseconds backoff_max{250};
  // Retries in flight per service may be at most this share of the calls in
  // flight to it, but at least retry_budget_min. The minimum is Envoy's 3
  // times three: a hung instance's calls time out in a steady stream that
  // thins out as its last calls expire, and with a floor of 3 a stall of
  // ~20 ms on the healthy instances then (150 timeouts/s) refused a retry a
  // user saw (docs/architecture.md, on retries). Ten retries at
  // once stays small beside what max_attempts already allows.
  double retry_budget_percent = 20.0;
  std::uint32_t retry_budget_min = 10;
  // Pooled connections per (thread, endpoint). Above the requests in flight
  // to one endpoint, or each answer past it closes its connection and the
  // next request opens one: at 200 in flight a limit of 64 doubled the
  // gateway's CPU per request and left a TIME_WAIT socket per request
  // (docs/benchmarks.md, "At 200 connections"). Ones idle longer than
  // pool_idle_timeout are closed, oldest first, at the next request to
  // that endpoint, so steady traffic sheds what a past peak left; and at
  // most a second later by a request to any endpoint on the same thread, so
  // an endpoint that left keeps none.
  std::size_t max_idle_per_endpoint = 256;
  // A pooled connection unused for this long is closed instead of reused;
  // keep it below the servers' idle timeout so we rarely reuse a dying one.
  std::chrono::milliseconds pool_idle_timeout{15'000};
  std::size_t response_limit = 8 * 1024 * 1024;
  // How long a call waits for a service's first snapshot from the registry.
  std::chrono::milliseconds resolve_timeout{2000};
  std::string user_agent = "disco-http";
  // Services a client (its ChannelSet) will watch at most: each name in a
  // URL makes a channel, a registry watch and its metrics for the client's
  // life, so a caller that takes names from its own clients must not grow
  // without bound. Past it, calls to new names fail with kUnavailable.
  std::size_t max_services = 1024;
  MetricsRegistry* metrics = nullptr;  // nullptr: MetricsRegistry::Default()

  // TLS to instances (a tls::Config of Role::kClient: the CA to trust, and
  // the certificate to present for mutual TLS). Set: every call to a
  // discovered service goes over TLS, and the instance's certificate must
  // name the address dialled and the service it was discovered as (disco/tls.h),
  // so an instance someone else wrote into the registry gets no request; a
  // plain-HTTP instance then fails its calls (as a connect failure, retried
  // on another instance). Unset: plain HTTP; an instance registered as
  // serving HTTPS (ServiceInstance::SpeaksTls) is not called, with an error
  // saying this caller needs TLS settings. https:// URLs to host:port use
  // these settings too, or the system's CAs when unset.
  std::shared_ptr<tls::Config> tls{};
};

struct ClientRequest {
  std::string method = "GET";
  std::string url{};  // Client::Send: http://service/path?query or http://host:port/path
  // Channel::Send (disco/http/channel.h): path and query, "/..." or "?...";
  // empty is "/". Client::Send sets it from `url`.
  std::string target{};
  // Sent as given, duplicates kept; a Host or User-Agent here replaces the
  // client's own.
  std::vector<std::pair<std::string, std::string>> headers{};
  // More headers, not copied: every name and value must stay valid until
  // Send() completes. For a proxy forwarding the headers of the request it
  // is handling (they live as long as its handler). Sent after `headers`,
  // by the same rules.
  std::vector<std::pair<std::string_view, std::string_view>> borrowed_headers{};
  std::string body{};
  std::string content_type{};   // sent when non-empty
  std::string request_id{};     // sent as X-Request-Id when non-empty
  // Sent as the W3C `traceparent` when valid: pass the incoming request's
  // (http::Request::traceparent) so the called server joins its trace.
  std::string traceparent{};
  std::string authorization{};  // sent as Authorization when non-empty
  // Whether a reset, timeout or 503 may be retried. Default: true for the
  // methods RFC 9110 (9.2.2) calls idempotent (GET, HEAD, OPTIONS, TRACE,
  // PUT, DELETE), and for a request whose `headers` hold an Idempotency-Key
  // (the server promises to act on it once, see order-service).
  std::optional<bool> retry_safe{};
  std::string hash_key{};  // for consistent-hashing policies
};

struct ClientResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers{};
  std::string body{};
  std::string instance_id{};  // the instance that answered (empty for direct calls)
  std::string address{};      // host:port that answered
  int attempts = 0;

  std::string_view Header(std::string_view name) const;
};

// Totals since the client was made (all services).
struct ClientStats {
  std::uint64_t calls = 0;             // Send() calls that picked or resolved
  std::uint64_t attempts = 0;          // retries included
  std::uint64_t retries = 0;           // attempts after the first
  std::uint64_t budget_exhausted = 0;  // retries wanted but refused by the budget
};

class Client {
 public:
  Client(Registry& registry, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Runs on an io_context's own executor (disco/http/awaitable.h); pooled
  // connections are per io_context.
  // Errors (the message says which service and why):
  //   kInvalidArgument  bad URL
  //   kUnavailable      no instance known, every attempt failed to connect,
  //                     or a retry was needed and the retry budget is spent
  //   kTimeout          the last attempt timed out, or the deadline passed
  //   kReset            the instance reset or closed the connection before a
  //                     complete answer
  //   kMalformed        the instance answered with something that is not
  //                     HTTP, or with more than response_limit
  // An HTTP answer, whatever its status, is a value, not an error.
  Awaitable<Result<ClientResponse>> Send(ClientRequest request);

  // Starts resolving `service` now and blocks up to `timeout` for its first
  // snapshot, so that the first call does not wait. For start-up code only:
  // never call it on an I/O thread. Errors: kInvalidArgument (bad name).
  Result<void> Prepare(std::string_view service, std::chrono::milliseconds timeout);

  // The resolver the client uses for `service` (made on first use; lives as
  // long as the client), e.g. to show its endpoints and their counters.
  // Errors: kInvalidArgument (bad name).
  Result<Resolver*> ResolverFor(std::string_view service);

  ClientStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace disco::http
