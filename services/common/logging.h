// Process logging for the services: JSON lines through spdlog, each with the
// fields a log pipeline keys on (docs/services.md, "Logs"):
//
//   logger "disco"  (stderr) {"ts":...,"level":"info","service":"user-service",
//                   "instance":"user-service-127.0.0.1-5001","logger":"disco",
//                   "request_id":null,"trace_id":null,"msg":"..."}
//                   shared with libdisco, which logs through the same name;
//                   request_id and trace_id are set on lines written through
//                   LogRequest (about one request), null on the others
//   logger "access" (stdout) one line per request, written by http::Server
//                   with the same leading fields, "type":"access", and the
//                   request's request_id, trace_id, span_id and parent_id;
//                   buffered, flushed every second and at exit (FlushLogs)
//
// Never log secrets: not the JWT secret, not tokens, not passwords, not the
// database password (use DatabaseUrl::Redacted) or registry tokens.
//
// Thread safety: call SetupLogging once in main() before anything logs; the
// loggers are thread-safe afterwards.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>
#include <utility>

#include "disco/http/message.h"

namespace disco::service {

void SetupLogging(std::string_view level);

// The service and instance every line names; the instance id may only be
// known once the server listens (--port 0), so it can be set again.
void SetLogIdentity(std::string_view service, std::string_view instance);

// The "disco" logger.
spdlog::logger& Log();

namespace detail {
// The request the line being formatted on this thread is about (LogRequest).
class RequestLogScope {
 public:
  explicit RequestLogScope(const http::Request& request);
  ~RequestLogScope();
  RequestLogScope(const RequestLogScope&) = delete;
  RequestLogScope& operator=(const RequestLogScope&) = delete;

 private:
  const http::Request* previous_;
};
}  // namespace detail

// A line about one request: its request_id and trace_id fill the line's
// fields. Formatting is synchronous, so the request is known only for the
// duration of this call: safe in coroutines that move between threads.
template <class... Args>
void LogRequest(const http::Request& request, spdlog::level::level_enum level,
                spdlog::format_string_t<Args...> format, Args&&... args) {
  detail::RequestLogScope scope(request);
  Log().log(level, format, std::forward<Args>(args)...);
}

// Writes out buffered log lines (call before exiting).
void FlushLogs();

}  // namespace disco::service
