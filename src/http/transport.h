// Transport: one HTTP/1.1 exchange with one endpoint (host:port), over a
// pool of keep-alive connections per io_context. It knows nothing of
// discovery, retries or services: the client (and a channel) pick the
// endpoint, decide on retries and count the outcome; the transport only
// connects, writes, parses (the strict fast parser, Beast for anything
// else), bounds everything by the attempt's deadline and the response limit,
// and keeps the connection for the next exchange when it can.
//
// Thread safety: a Transport is immutable after construction and may be used
// from any number of io_context threads at once; its pools are per
// io_context (an io_context service), touched only by that context's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "disco/error.h"
#include "disco/http/awaitable.h"
#include "disco/http/client.h"
#include "disco/outlier.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace disco::tls {
class Config;
}  // namespace disco::tls

namespace disco::http::detail {

class Connection;

struct TransportOptions {
  std::size_t max_idle_per_endpoint = 256;  // pooled connections per (thread, endpoint); ClientOptions
  // A pooled connection unused for this long is closed instead of reused.
  std::chrono::milliseconds pool_idle_timeout{15'000};
  std::size_t response_limit = 8 * 1024 * 1024;
  std::string user_agent = "disco-http";
};

// One exchange's result. Lives in the caller's coroutine frame and is filled
// in place: no result is moved between frames, and RoundTrip's frame stays
// well under the 1 KiB that Asio recycles and malloc's tcache serves (above
// that, every call takes malloc's slow path).
struct AttemptResult {
  CallOutcome outcome = CallOutcome::kSuccess;  // kServerError only for a 5xx answer
  bool answered = false;                        // `response` holds an HTTP answer
  ErrorCode code = ErrorCode::kUnavailable;     // when !answered
  std::string error;                            // when !answered
  ClientResponse response;

  void Reset();
};

// Marks `result` failed with `outcome` (its error code from ErrorCodeFor).
void SetFailed(AttemptResult& result, CallOutcome outcome, std::string error);

// Lets the owner of a long exchange (a registry's long poll) abort it from
// another coroutine of the same io_context: Cancel() closes the connection
// in flight, so the exchange ends at once with ErrorCode::kCancelled, and
// every later exchange given this Interrupt fails the same way before it
// starts. Not thread-safe: the io_context's thread only.
class Interrupt {
 public:
  void Cancel();
  bool cancelled() const { return cancelled_; }

 private:
  friend class Transport;
  bool cancelled_ = false;
  std::shared_ptr<Connection> active_;  // the exchange in flight, if any
};

// What an exchange may have beyond its deadline (the registry backends'):
// a shorter bound on connecting (an unreachable agent must be reported in
// seconds even when the long poll may take minutes), and an Interrupt.
// `tls`: the exchange goes over TLS with these settings (a client config),
// the server's certificate checked for the address's host and, when
// `identity` is not empty, for that service (detail::ConnectTls). TLS
// connections are pooled apart from plain ones, by identity and address.
struct ExchangeControl {
  std::chrono::steady_clock::time_point connect_deadline =
      std::chrono::steady_clock::time_point::max();
  Interrupt* interrupt = nullptr;
  const tls::Config* tls = nullptr;
  std::string_view identity{};
};

class Transport {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Transport(TransportOptions options);

  // The request line and header block of `request` for `target` (path and
  // query; may be empty or start with '?') with Host `authority`: one
  // string, headers with line breaks dropped (no header injection).
  std::string SerializeHead(const ClientRequest& request, std::string_view authority,
                            std::string_view target) const;

  // Sends `head` (SerializeHead) and `body` to `address` ("host:port") and
  // reads the answer into `result` (which must be Reset()), on the calling
  // coroutine's io_context, by `deadline`. A pooled connection the peer
  // closed while idle is replaced once, transparently (the request had not
  // been processed). `started`: when the attempt began (the pool's "now" for
  // this take; a connection is idle from when it was put back).
  // `control` (may be null) must outlive the exchange.
  Awaitable<void> RoundTrip(std::string_view head, std::string_view body, std::string_view method,
                            std::string_view address, Clock::time_point started,
                            Clock::time_point deadline, AttemptResult& result,
                            const ExchangeControl* control = nullptr) const;

  // Closes this transport's idle connections on `ioc` (a registry backend
  // at shutdown). Call on ioc's thread.
  void CloseIdle(boost::asio::io_context& ioc) const;

  const TransportOptions& options() const { return options_; }

 private:
  const TransportOptions options_;
  const std::string id_;  // pools are keyed by transport and address
};

}  // namespace disco::http::detail
