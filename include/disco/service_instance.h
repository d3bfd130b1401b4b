// ServiceInstance: one running copy of a service, as registered in a registry.
//
// Thread safety: a plain value type.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "disco/error.h"

namespace disco {

// The metadata key and value by which an instance says it serves HTTPS.
inline constexpr std::string_view kSchemeKey = "scheme";
inline constexpr std::string_view kSchemeHttps = "https";

struct ServiceInstance {
  std::string service{};  // logical name, e.g. "user-service"
  std::string id{};       // unique per service, e.g. "user-service-1"
  std::string host{};     // address callers connect to (IP or DNS name)
  std::uint16_t port = 0;
  std::vector<std::string> tags{};
  std::map<std::string, std::string> metadata{};
  std::uint32_t weight = 1;  // relative share for weighted policies, >= 1
  std::string zone{};          // optional locality

  // "host:port", with IPv6 hosts in brackets.
  std::string Address() const;
  // The instance serves HTTPS: its metadata has scheme=https (kSchemeKey),
  // as services started with a TLS certificate register themselves.
  bool SpeaksTls() const;

  bool operator==(const ServiceInstance&) const = default;
};

// Health as the registry sees it. etcd has no health states: a key exists
// only while its lease lives, so every etcd instance is kPassing.
enum class HealthState { kPassing, kWarning, kCritical };

std::string_view HealthStateName(HealthState state);

struct InstanceStatus {
  ServiceInstance instance{};
  HealthState health = HealthState::kPassing;
  std::string detail{};  // registry-specific note (check output), may be empty
};

// Names (service, id, tag, metadata key) must fit every backend's rules:
// 1–128 characters of [A-Za-z0-9_.-] for service and id; host non-empty;
// port 1–65535; weight 1–10000.
Result<void> Validate(const ServiceInstance& instance);
Result<void> ValidateName(std::string_view what, std::string_view name);

}  // namespace disco
