// The one place where policy names map to factories (no static self-registration).
#include <array>
#include <string>

#include "balance/policies.h"

namespace disco {
namespace {

struct Entry {
  std::string_view name;
  std::unique_ptr<Balancer> (*make)();
};

constexpr std::array kPolicies = {
    Entry{"round_robin", &balance::MakeRoundRobin},
    Entry{"random", &balance::MakeRandom},
    Entry{"weighted_round_robin", &balance::MakeWeightedRoundRobin},
    Entry{"least_request", &balance::MakeLeastRequest},
    Entry{"ring_hash", &balance::MakeRingHash},
};

constexpr auto kNames = [] {
  std::array<std::string_view, kPolicies.size()> names{};
  for (std::size_t i = 0; i < kPolicies.size(); ++i) names[i] = kPolicies[i].name;
  return names;
}();

}  // namespace

Result<std::unique_ptr<Balancer>> MakeBalancer(std::string_view policy) {
  for (const auto& entry : kPolicies) {
    if (entry.name == policy) return entry.make();
  }
  std::string known;
  for (auto name : kNames) {
    if (!known.empty()) known += ", ";
    known += name;
  }
  return Fail(ErrorCode::kInvalidArgument,
              "unknown balancer policy '" + std::string(policy) + "' (known: " + known + ")");
}

std::span<const std::string_view> BalancerNames() { return kNames; }

}  // namespace disco
