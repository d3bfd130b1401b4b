// Process logging for the services: JSON lines through spdlog.
//
//   logger "disco"  (stderr) {"ts":...,"level":"info","logger":"disco","msg":"..."}
//                   shared with libdisco, which logs through the same name
//   logger "access" (stdout) one line per request, written by http::Server;
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

namespace disco::service {

void SetupLogging(std::string_view level);

// The "disco" logger.
spdlog::logger& Log();

// Writes out buffered log lines (call before exiting).
void FlushLogs();

}  // namespace disco::service
