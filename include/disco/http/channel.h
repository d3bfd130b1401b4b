// Channel: the way to one service. ChannelSet: the process's channels, one
// per service name, made once and shared.
//
//   http::ChannelSet channels(registry, options);          // once per process
//   http::Channel* users = *channels.Get("user-service");  // once per caller
//   http::ClientRequest req;
//   req.target = "/api/users/me";                          // path and query: no URL
//   req.authorization = incoming.Header("Authorization");
//   auto res = co_await users->Send(std::move(req));
//
// A call goes one way: channel → snapshot → picker → pool → server. The
// channel holds what belongs to the service: its Resolver (watch, snapshot,
// balancer, outlier detection), its retry budget and its metrics; the
// set's Transport holds the connection pools per endpoint and speaks
// HTTP/1.1. Each attempt is picked by the balancer; a retry's pick carries
// the instances the call already tried (PickContext::tried), so every
// policy sends it elsewhere in its own way. When to retry, backoff, budget,
// deadlines and metrics are as http::Client describes (disco/http/client.h),
// which is a thin layer over a ChannelSet taking URLs.
//
// What is per service and what per call: the balancer policy, outlier
// detection and the retry budget are the service's (one watch, one view of
// ejections, one budget, whoever calls), as in Envoy's clusters; attempts,
// timeouts and backoff may differ per call (CallOptions, as Envoy's routes),
// and default to the set's ClientOptions.
//
// Thread safety: every method may be called from any thread at once; Send
// runs on an io_context's own executor, like Client::Send. A Channel lives
// as long as its ChannelSet; the registry must outlive the set, and the set
// every Send in progress.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "disco/error.h"
#include "disco/http/awaitable.h"
#include "disco/http/client.h"
#include "disco/registry.h"

namespace disco {
class Resolver;
}  // namespace disco

namespace disco::http {

// How one call retries and times out (ClientOptions holds the defaults).
struct CallOptions {
  std::chrono::milliseconds per_try_timeout{2000};
  int max_attempts = 3;                   // the first included; 1 = no retry
  std::chrono::milliseconds deadline{0};  // zero: per_try_timeout × max_attempts
  std::chrono::milliseconds backoff_base{25};
  std::chrono::milliseconds backoff_max{250};
};

// The call options of `options` (its per_try_timeout ... backoff_max).
CallOptions CallOptionsOf(const ClientOptions& options);

class ChannelSet;

class Channel {
 public:
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  const std::string& service() const;

  // The channel's resolver: its endpoints, their counters, its detector.
  Resolver& resolver();

  // Sends `request` to request.target (path and query, "/..." or "?...";
  // empty is "/") on an instance of the service; `request.url` is ignored.
  // `call`: this call's attempts and timeouts (null: the set's defaults).
  // Errors and outcomes as Client::Send.
  Awaitable<Result<ClientResponse>> Send(ClientRequest request, const CallOptions* call = nullptr);

  // Blocks up to `timeout` for the service's first snapshot (start-up only,
  // never on an I/O thread). True when the registry has answered with one.
  bool WaitReady(std::chrono::milliseconds timeout);

  // Totals of this channel's calls since it was made.
  ClientStats stats() const;

 private:
  friend class ChannelSet;
  friend class Client;
  struct Impl;
  explicit Channel(std::unique_ptr<Impl> impl);

  // A call straight to `address` (host:port), without discovery: retried
  // only after a connect failure (there is no other instance).
  // `tls`: over TLS (an https:// URL), the certificate checked for the
  // address's host against the set's CA (or the system's).
  Awaitable<Result<ClientResponse>> SendTo(ClientRequest request, std::string address,
                                           bool tls = false);

  std::unique_ptr<Impl> impl_;
};

class ChannelSet {
 public:
  // `registry` must outlive the set.
  explicit ChannelSet(Registry& registry, ClientOptions options = {});
  ~ChannelSet();
  ChannelSet(const ChannelSet&) = delete;
  ChannelSet& operator=(const ChannelSet&) = delete;

  // The channel of `service`, made on first use with the set's options and
  // kept for the set's life (starts watching the service).
  // Errors: kInvalidArgument (bad service name), kUnavailable (a new
  // service past ClientOptions::max_services).
  Result<Channel*> Get(std::string_view service);

  // The same with the service's own policy, outlier detection and retry
  // budget (and default call options) taken from `options`; its transport
  // settings (pools, response limit, user agent, metrics) stay the set's.
  // Errors: kInvalidArgument for a bad name or policy, or when the service's
  // channel exists already with another policy, detection or budget (a
  // service has one balancer and one budget; the message names both).
  Result<Channel*> Get(std::string_view service, const ClientOptions& options);

  // Totals over every channel, direct calls included.
  ClientStats stats() const;

  const ClientOptions& options() const;

 private:
  friend class Client;
  Channel& direct();  // calls by address (Client's http://host:port URLs)

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace disco::http
