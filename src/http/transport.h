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
#include <string>
#include <string_view>

#include "disco/error.h"
#include "disco/http/awaitable.h"
#include "disco/http/client.h"
#include "disco/outlier.h"

namespace disco::http::detail {

struct TransportOptions {
  std::size_t max_idle_per_endpoint = 64;  // pooled connections per (thread, endpoint)
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
  // been processed). `started`: when the attempt began (a connection parked
  // since counts as idle from then).
  Awaitable<void> RoundTrip(std::string_view head, std::string_view body, std::string_view method,
                            std::string_view address, Clock::time_point started,
                            Clock::time_point deadline, AttemptResult& result) const;

  const TransportOptions& options() const { return options_; }

 private:
  const TransportOptions options_;
  const std::string id_;  // pools are keyed by transport and address
};

}  // namespace disco::http::detail
