// The one place where policy names map to factories: the built-ins in a
// constant table, the user's (RegisterBalancer) in a small locked list.
// No static self-registration: what exists is visible here.
#include <array>
#include <mutex>
#include <string>
#include <vector>

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

// Registered policies. Read on the control plane only (a resolver's
// construction), never on the pick path, so a mutex is fine.
struct Registered {
  std::mutex mu;
  std::vector<std::pair<std::string, BalancerFactory>> policies;
};

Registered& User() {
  static Registered registered;
  return registered;
}

bool IsPolicyName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

}  // namespace

Result<std::unique_ptr<Balancer>> MakeBalancer(std::string_view policy) {
  for (const auto& entry : kPolicies) {
    if (entry.name == policy) return entry.make();
  }
  {
    auto& user = User();
    std::lock_guard lock(user.mu);
    for (const auto& [name, make] : user.policies) {
      if (name != policy) continue;
      auto balancer = make();
      if (!balancer)
        return Fail(ErrorCode::kInternal,
                    "the factory of balancer policy '" + name + "' made nothing");
      return balancer;
    }
  }
  std::string known;
  for (const auto& name : AllBalancerNames()) {
    if (!known.empty()) known += ", ";
    known += name;
  }
  return Fail(ErrorCode::kInvalidArgument,
              "unknown balancer policy '" + std::string(policy) + "' (known: " + known + ")");
}

std::span<const std::string_view> BalancerNames() { return kNames; }

Result<void> RegisterBalancer(std::string_view name, BalancerFactory factory) {
  if (!IsPolicyName(name))
    return Fail(ErrorCode::kInvalidArgument,
                "balancer policy name '" + std::string(name) +
                    "' must be 1-64 characters of [a-z0-9_]");
  if (!factory)
    return Fail(ErrorCode::kInvalidArgument,
                "balancer policy '" + std::string(name) + "' has no factory");
  for (auto builtin : kNames) {
    if (builtin == name)
      return Fail(ErrorCode::kInvalidArgument,
                  "balancer policy '" + std::string(name) + "' is built in and cannot be replaced");
  }
  auto& user = User();
  std::lock_guard lock(user.mu);
  for (const auto& entry : user.policies) {
    if (entry.first == name)
      return Fail(ErrorCode::kInvalidArgument,
                  "balancer policy '" + std::string(name) + "' is already registered");
  }
  user.policies.emplace_back(std::string(name), std::move(factory));
  return {};
}

std::vector<std::string> AllBalancerNames() {
  std::vector<std::string> names(kNames.begin(), kNames.end());
  auto& user = User();
  std::lock_guard lock(user.mu);
  for (const auto& entry : user.policies) names.push_back(entry.first);
  return names;
}

}  // namespace disco
