// The last-resort fallback every policy shares when its own way of avoiding
// ejected (and, for a retry, already tried) endpoints gave up.
//
// Thread safety: reads only relaxed atomics of the endpoints; callable from
// any thread on the pick path (no lock, no allocation).
#pragma once

#include <cstdint>
#include <vector>

#include "disco/balancer.h"
#include "disco/snapshot.h"

namespace disco::balance {

// The first endpoint at or after `start`, cyclically, that is not ejected;
// when every endpoint is ejected, endpoints[start] (balancer.h: better a
// likely-failing endpoint than none). O(n) in the worst case, which only
// happens while most endpoints are ejected.
// REQUIRES: start < endpoints.size().
inline const Endpoint* FirstHealthyFrom(const std::vector<Endpoint>& endpoints,
                                        std::uint32_t start) {
  const auto size = static_cast<std::uint32_t>(endpoints.size());
  std::uint32_t index = start;
  for (std::uint32_t i = 0; i < size; ++i) {
    if (!endpoints[index].ejected()) return &endpoints[index];
    index = index + 1 == size ? 0 : index + 1;
  }
  return &endpoints[start];
}

// Whether a pick should pass over `endpoint`: ejected, or already tried by
// this call.
inline bool Avoided(const Endpoint& endpoint, const PickContext& context) {
  return endpoint.ejected() || context.Tried(endpoint);
}

// FirstHealthyFrom, passing over the endpoints this call tried as well while
// any other healthy one is left. A retry's scan, so O(n × tried).
// REQUIRES: start < endpoints.size().
inline const Endpoint* FirstUsableFrom(const std::vector<Endpoint>& endpoints,
                                       std::uint32_t start, const PickContext& context) {
  if (context.tried.empty()) [[likely]]
    return FirstHealthyFrom(endpoints, start);
  const auto size = static_cast<std::uint32_t>(endpoints.size());
  std::uint32_t index = start;
  for (std::uint32_t i = 0; i < size; ++i) {
    if (!Avoided(endpoints[index], context)) return &endpoints[index];
    index = index + 1 == size ? 0 : index + 1;
  }
  return FirstHealthyFrom(endpoints, start);
}

}  // namespace disco::balance
