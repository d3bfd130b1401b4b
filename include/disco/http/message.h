// HTTP requests and responses as handlers see them, and the JSON error body.
//
// These are plain values, independent of Beast, so that handler code compiles
// without Beast's templates. A Request's header names and values are views
// into the connection's parsed message: valid while the handler runs (copy
// what you keep longer). Everything else is owned.
//
// Errors over HTTP are always JSON: {"error":"<stable_code>","message":"<text>"}.
//
// Thread safety: plain values; a Request belongs to the coroutine handling it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace disco::http {

namespace detail {
// REQUIRES: a.size() == b.size().
bool EqualsIgnoringCase(std::string_view a, std::string_view b);
}  // namespace detail

// Header names compare case-insensitively. Inline: most comparisons are
// between names of different lengths and end at the size check.
inline bool HeaderNameEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && detail::EqualsIgnoringCase(a, b);
}

struct Request {
  std::string_view method{};  // "GET", "POST", ... (upper case, as sent)
  std::string_view target{};  // as sent: path and query
  std::string_view path{};    // target up to '?'
  std::string_view query{};   // after '?', without it; empty if none
  std::vector<std::pair<std::string_view, std::string_view>> headers{};
  std::string body{};

  // Filled in by the server before the handler runs.
  std::string request_id{};  // the caller's X-Request-Id if valid, else a new one
  // W3C Trace Context: "00-<trace id>-<span id>-<flags>", the span this
  // server handles the request in, in the caller's trace (its valid
  // `traceparent`) or a new one. Pass it on to calls made for this request
  // (ClientRequest::traceparent) so their servers join the trace.
  std::string traceparent{};
  std::string parent_span_id{};  // the caller's span id; empty if it sent no valid traceparent
  std::string_view route{};  // the matched pattern, e.g. "/api/users/{id}"
  std::vector<std::pair<std::string_view, std::string_view>> params{};  // {name} -> segment
  std::string remote_address{};
  // It came over TLS (the server serves HTTPS): a proxy tells its upstream
  // so (X-Forwarded-Proto), for redirects and Secure cookies.
  bool secure = false;

  // The first header with this name, or empty.
  std::string_view Header(std::string_view name) const;
  bool HasHeader(std::string_view name) const;
  // The value of path parameter {name}, or empty.
  std::string_view Param(std::string_view name) const;
  // The token of "Authorization: Bearer <token>", or empty if absent or not Bearer.
  std::string_view BearerToken() const;
  // True when Content-Type is application/json (parameters such as charset allowed).
  bool IsJson() const;
  // Parts of `traceparent` (empty before the server fills it in).
  std::string_view TraceId() const;  // 32 hex digits
  std::string_view SpanId() const;   // 16 hex digits
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";  // empty: no Content-Type header
  // Extra headers, sent in order with duplicates kept (Content-Type,
  // X-Request-Id and X-Served-By here replace the server's own; Content-Length and
  // Connection are the server's business and must not be given).
  std::vector<std::pair<std::string, std::string>> headers{};
  std::string body{};

  // A response whose body is already JSON text.
  static Response Json(int status, std::string json_body);
  static Response Text(int status, std::string text,
                       std::string content_type = "text/plain; charset=utf-8");
  // {"error":code,"message":message} with `status`.
  static Response Error(int status, std::string_view code, std::string_view message);
};

// `text` as a JSON string literal, quotes included (UTF-8 passed through,
// control characters escaped).
std::string JsonQuote(std::string_view text);

// X-Request-Id rules: 1–128 characters of [A-Za-z0-9._:-]. Anything else is
// replaced by a generated id rather than rejected, so a bad id never fails a
// request and never reaches a log unescaped.
bool IsValidRequestId(std::string_view id);
// 32 lowercase hex digits from a fast per-thread generator (unique, not secret).
std::string NewRequestId();

// The standard reason phrase ("Not Found"), or "Unknown".
std::string_view ReasonPhrase(int status);

}  // namespace disco::http
