// Process-wide counters of the requests the Consul backend sends, by kind.
//
// They exist so that benchmarks and tests can state "registry requests per
// instance per minute" from the client side (bench/registry_compare.cpp).
// Thread safety: relaxed atomics; read from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

namespace disco::consul {

enum class RequestKind : int {
  kRegister,    // PUT /v1/agent/service/register (first time and re-registrations)
  kHeartbeat,   // PUT /v1/agent/check/pass/<check>, GET /v1/agent/service/<id>
  kDeregister,  // PUT /v1/agent/service/deregister/<id>
  kWatch,       // GET /v1/health/service/<name> from a watch (blocking or not)
  kRead,        // one-shot reads: List, Services
  kOther,
  kCount,
};

std::string_view RequestKindName(RequestKind kind);

// Counts one request of `kind` (called by the HTTP client per request sent).
void CountRequest(RequestKind kind);

// Requests of `kind` sent by this process since it started.
std::uint64_t RequestsSent(RequestKind kind);

}  // namespace disco::consul
