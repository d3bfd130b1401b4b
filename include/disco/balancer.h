// Load balancing: a Balancer turns a Snapshot into a Picker; a Picker picks.
//
// Policies, chosen by name (MakeBalancer):
//   round_robin           each endpoint in turn
//   random                uniform random
//   weighted_round_robin  smooth weighted round robin, the sequence nginx produces
//   least_request         power of two choices on in-flight requests
//   ring_hash             consistent hashing on PickContext::hash_key (ketama-style ring)
//
// Thread safety: Balancer::Build runs on the control plane (one thread at a
// time per balancer). Picker::Pick may be called from any number of threads at
// once; it never locks, never allocates and never blocks. Every policy skips
// ejected endpoints; when all are ejected it picks among all of them (better a
// likely-failing endpoint than none: the caller's retry logic decides).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

#include "disco/error.h"
#include "disco/snapshot.h"

namespace disco {

struct PickContext {
  // Key for consistent hashing (user id, session id...). Policies that do not
  // hash ignore it; ring_hash without a key picks at random.
  std::string_view hash_key{};
};

class Picker {
 public:
  virtual ~Picker() = default;

  // Returns an endpoint of the snapshot the picker was built from, or nullptr
  // when that snapshot is empty. The pointer lives as long as the snapshot.
  virtual const Endpoint* Pick(const PickContext& context) = 0;
};

class Balancer {
 public:
  virtual ~Balancer() = default;

  virtual std::string_view name() const = 0;

  // REQUIRES: snapshot != nullptr. The picker keeps the snapshot alive.
  virtual std::unique_ptr<Picker> Build(SnapshotConstPtr snapshot) = 0;
};

// Errors: kInvalidArgument for an unknown policy, listing the known ones.
Result<std::unique_ptr<Balancer>> MakeBalancer(std::string_view policy);

// The names MakeBalancer accepts, in a stable order.
std::span<const std::string_view> BalancerNames();

}  // namespace disco
