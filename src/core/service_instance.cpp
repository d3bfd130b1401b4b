#include "disco/service_instance.h"

#include <string>

#include "util/utf8.h"

namespace disco {
namespace {

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

}  // namespace

bool ServiceInstance::SpeaksTls() const {
  const auto it = metadata.find(std::string(kSchemeKey));
  return it != metadata.end() && it->second == kSchemeHttps;
}

std::string ServiceInstance::Address() const {
  std::string out;
  if (host.find(':') != std::string::npos) {
    out = "[" + host + "]";
  } else {
    out = host;
  }
  out += ':';
  out += std::to_string(port);
  return out;
}

std::string_view HealthStateName(HealthState state) {
  switch (state) {
    case HealthState::kPassing: return "passing";
    case HealthState::kWarning: return "warning";
    case HealthState::kCritical: return "critical";
  }
  return "unknown";
}

Result<void> ValidateName(std::string_view what, std::string_view name) {
  if (name.empty()) return Fail(ErrorCode::kInvalidArgument, std::string(what) + " is empty");
  if (name.size() > 128) {
    return Fail(ErrorCode::kInvalidArgument, std::string(what) + " is longer than 128 characters");
  }
  for (char c : name) {
    if (!IsNameChar(c)) {
      return Fail(ErrorCode::kInvalidArgument,
                  std::string(what) + " '" + std::string(name) +
                      "' may only contain letters, digits, '_', '.' and '-'");
    }
  }
  if (name == "." || name == "..") {
    return Fail(ErrorCode::kInvalidArgument, std::string(what) + " may not be '.' or '..'");
  }
  return {};
}

Result<void> Validate(const ServiceInstance& instance) {
  if (auto ok = ValidateName("service name", instance.service); !ok) return ok;
  if (auto ok = ValidateName("instance id", instance.id); !ok) return ok;
  if (instance.host.empty()) return Fail(ErrorCode::kInvalidArgument, "host is empty");
  if (instance.host.find_first_of(" /\t\r\n") != std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument, "host '" + instance.host + "' is not a host name or IP");
  }
  if (instance.host == "0.0.0.0" || instance.host == "::") {
    return Fail(ErrorCode::kInvalidArgument,
                "host " + instance.host + " is a wildcard; register an address callers can reach");
  }
  if (instance.port == 0) return Fail(ErrorCode::kInvalidArgument, "port must be 1-65535");
  if (instance.weight < 1 || instance.weight > 10000) {
    return Fail(ErrorCode::kInvalidArgument, "weight must be 1-10000");
  }
  // Registries store JSON (Consul's API, our etcd values): text that is
  // not UTF-8 cannot be written there.
  if (!util::IsValidUtf8(instance.host))
    return Fail(ErrorCode::kInvalidArgument, "host is not UTF-8");
  for (const auto& tag : instance.tags) {
    if (tag.empty() || tag.size() > 256) {
      return Fail(ErrorCode::kInvalidArgument, "tags must be 1-256 characters");
    }
    if (!util::IsValidUtf8(tag)) return Fail(ErrorCode::kInvalidArgument, "a tag is not UTF-8");
  }
  for (const auto& [key, value] : instance.metadata) {
    // Consul allows only [A-Za-z0-9_-] in metadata keys; hold every backend to it.
    if (key.empty() || key.size() > 128 || key.find('.') != std::string::npos ||
        !ValidateName("metadata key", key)) {
      return Fail(ErrorCode::kInvalidArgument,
                  "metadata key '" + key + "' must be 1-128 characters of [A-Za-z0-9_-]");
    }
    if (key.starts_with("consul-")) {
      return Fail(ErrorCode::kInvalidArgument, "metadata key prefix 'consul-' is reserved");
    }
    if (value.size() > 512) {
      return Fail(ErrorCode::kInvalidArgument, "metadata value for '" + key + "' is over 512 characters");
    }
    if (!util::IsValidUtf8(value))
      return Fail(ErrorCode::kInvalidArgument, "metadata value for '" + key + "' is not UTF-8");
  }
  return {};
}

}  // namespace disco
