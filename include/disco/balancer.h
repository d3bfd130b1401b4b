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
// Every policy also passes over the endpoints in PickContext::tried while
// one that is neither tried nor ejected exists, in its own way: a retry goes
// where the policy would send it next, not to a scan's first candidate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "disco/error.h"
#include "disco/snapshot.h"

namespace disco {

struct PickContext {
  // Key for consistent hashing (user id, session id...). Policies that do not
  // hash ignore it; ring_hash without a key picks at random.
  std::string_view hash_key{};
  // Ids of the instances this call has already tried. A retry's pick avoids
  // them while an endpoint that is neither tried nor ejected exists (Envoy's
  // shouldSelectAnotherHost, gRPC's picker); when none does, the policy
  // chooses as if nothing had been tried. round_robin and
  // weighted_round_robin take the next in their order, random and
  // least_request draw among the others, ring_hash walks on along the ring
  // (so a key's retries go to the same next endpoint). Empty on a first
  // attempt, which costs the policies one test. Ids, not endpoint pointers:
  // a retry may pick from a newer snapshot than the attempt it follows.
  std::span<const std::string> tried{};
  // A place in a picker's sequence that the caller keeps for one thread; the
  // Resolver keeps one beside each thread's pin of the snapshot. round_robin
  // and weighted_round_robin walk their sequence on it with plain arithmetic
  // instead of their per-CPU cursor's compare-and-swap, so a pick writes
  // nothing another thread writes and runs no locked instruction (issue 19).
  // The first such picker to see a fresh ThreadPosition (owner == nullptr)
  // seeds it from its per-CPU cursor and owns it; any other picker handed the
  // same context (a policy of your own that delegates to two inner pickers)
  // leaves it alone and uses its per-CPU cursor, so positions are never
  // shared between sequences. nullptr, as for a Picker called directly: the
  // per-CPU cursors. Other policies ignore it.
  // Thread safety: a context with a position belongs to one thread at a time
  // (the position is written without synchronisation).
  struct ThreadPosition {
    const void* owner = nullptr;  // the picker that seeded `next`
    std::uint32_t next = 0;
  };
  ThreadPosition* thread_position = nullptr;

  bool Tried(const Endpoint& endpoint) const noexcept {
    for (const auto& id : tried) {
      if (id == endpoint.instance.id) return true;
    }
    return false;
  }
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

// The built-in policies' names, in a stable order.
std::span<const std::string_view> BalancerNames();

// Makes a new, empty balancer of one policy.
using BalancerFactory = std::function<std::unique_ptr<Balancer>()>;

// Adds a policy of your own under `name`: from then on MakeBalancer, and so
// ResolverOptions::policy, http::ClientOptions::policy and every --policy
// flag, accept it. Its pickers must keep the Picker contract above (any
// thread, no lock, no allocation, skip ejected endpoints, pass over
// PickContext::tried; a policy that ignores `tried` still works, its retries
// just may land on an instance that failed this call); run your policy
// through the balancer harness (tests/unit/balancer_harness_test.cpp shows
// how). A picker that calls other pickers passes them the context, `tried`
// and `thread_position` included (the position stays with the first picker
// that takes it, see PickContext); it must not call Resolver::Pick, which
// may allocate. Register at start-up, before making resolvers.
// Errors: kInvalidArgument for a name that is empty, not [a-z0-9_]+, or
// already taken (built-ins cannot be replaced), or an empty factory.
Result<void> RegisterBalancer(std::string_view name, BalancerFactory factory);

// Every name MakeBalancer accepts: the built-ins, then the registered ones
// in registration order.
std::vector<std::string> AllBalancerNames();

}  // namespace disco
