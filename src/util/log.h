// The library's logger: a spdlog logger named "disco".
//
// Programs configure it (level, JSON pattern) through spdlog as usual; if they
// do not, it logs warnings and errors to stderr. Never log secrets (tokens,
// passwords): log the redacted registry URL.
#pragma once

#include <memory>

#include <spdlog/spdlog.h>

namespace disco::log {

// Thread-safe; the same logger for the whole process.
spdlog::logger& Get();

}  // namespace disco::log
