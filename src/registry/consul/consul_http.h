// The Consul agent API over the library's one HTTP transport
// (src/http/transport.h: keep-alive pools, the HTTP/1.1 codec, deadlines,
// the transparent retry of a pooled connection the agent closed): this file
// only says what a Consul request looks like (token, JSON body, the
// X-Consul-Index of an answer) and what its errors mean.
//
// Everything here lives on the backend's one I/O thread (see core.h): the
// client, its pooled connections and every CancelSlot are touched only from
// coroutines and handlers running on that io_context. Nothing is
// thread-safe and nothing needs to be.
//
// Each request has two bounds: a connect timeout (short: an unreachable agent
// must be reported within a few seconds) and a read timeout covering write +
// read of the whole exchange (long for blocking queries: wait + wait/16 +
// slack). A request never throws: transport failures come back as Error
// (kUnavailable, kTimeout, kCancelled), HTTP statuses are returned as they are.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "disco/detail/asio.h"
#include "disco/error.h"
#include "disco/registry_url.h"
#include "disco/tls.h"
#include "http/transport.h"
#include "registry/consul/consul_limiter.h"
#include "registry/consul/consul_stats.h"

namespace disco::consul {

struct HttpRequest {
  boost::beast::http::verb method = boost::beast::http::verb::get;
  std::string target;  // path and query, already escaped
  std::string body;
  std::chrono::milliseconds timeout{3000};  // write + read of the response
  RequestKind kind = RequestKind::kOther;   // for the request counters only
};

struct HttpResponse {
  int status = 0;
  std::string body;
  std::optional<std::uint64_t> index;  // X-Consul-Index, when present and numeric
};

// Lets the owner of a long-running task abort its in-flight request and wake
// its sleeps. Once cancelled it stays cancelled. I/O thread only.
class CancelSlot {
 public:
  explicit CancelSlot(boost::asio::io_context& io) : timer_(io) {}

  bool cancelled() const { return interrupt_.cancelled(); }

  // Closes the socket of the request in flight (it completes with kCancelled)
  // and ends any Sleep() at once.
  void Cancel();

  // Sleeps for `duration` or until Cancel(), whichever comes first.
  boost::asio::awaitable<void> Sleep(std::chrono::milliseconds duration);

  // What Cancel() also does while a request waits for its turn in a
  // RequestLimiter (it wakes the waiter); empty otherwise.
  void OnCancel(std::function<void()> wake) { wake_ = std::move(wake); }

 private:
  friend class HttpClient;
  boost::asio::steady_timer timer_;
  http::detail::Interrupt interrupt_;
  std::function<void()> wake_;
};

class HttpClient {
 public:
  // `url` is the redacted registry URL, used in error messages. `token`, when
  // not empty, goes out as X-Consul-Token on every request and nowhere else.
  // `tls`: HTTPS to the agents (null: HTTP). `agents` is not empty.
  HttpClient(boost::asio::io_context& io, const std::vector<HostPort>& agents, std::string token,
             std::string url, std::chrono::milliseconds connect_timeout,
             std::shared_ptr<tls::Config> tls = nullptr);

  // Sends one request to agent number `agent` (an index into `agents`) on a
  // pooled keep-alive connection or a new one. `slot` may be null.
  boost::asio::awaitable<Result<HttpResponse>> Send(HttpRequest request, CancelSlot* slot,
                                                    std::size_t agent = 0);

  // The prefix of this client's error messages about agent `agent`: the
  // registry URL, plus the agent's address when there are several.
  std::string What(std::size_t agent) const;

  // Closes every idle connection (at shutdown). I/O thread only.
  void CloseIdle();

  const std::string& url() const { return url_; }

 private:
  boost::asio::io_context& io_;
  std::vector<std::string> addresses_;  // host:port of each agent
  const std::string token_;
  const std::string url_;
  const std::chrono::milliseconds connect_timeout_;
  const std::shared_ptr<tls::Config> tls_;
  http::detail::Transport transport_;
  // Connections to the agent in flight, in two lanes (consul_limiter.h):
  // blocking queries, and everything else (registrations, heartbeats).
  RequestLimiter watch_lane_;
  RequestLimiter other_lane_;
};

// "consul://127.0.0.1:8500: GET /v1/health/service/x: 500 No cluster leader"
// style errors for a non-2xx answer: 400 → kInvalidArgument, 403 →
// kPermissionDenied, 404 → kNotFound, a 500 "No path to datacenter" (an
// unknown ?dc=) → kInvalidArgument, anything else → kUnavailable. `url` is
// the message prefix (HttpClient::What).
Error StatusError(const std::string& url, const HttpRequest& request, const HttpResponse& response);

}  // namespace disco::consul
