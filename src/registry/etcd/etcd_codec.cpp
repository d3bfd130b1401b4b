#include "registry/etcd/etcd_codec.h"

#include <nlohmann/json.hpp>

#include "disco/registry_url.h"
#include "util/log.h"
#include "util/utf8.h"

namespace disco::etcd {
namespace {

using Json = nlohmann::json;

// Metadata keys disco itself writes; any other key a foreign writer put in
// Metadata is kept as a string in ServiceInstance::metadata.
constexpr std::string_view kIdKey = "id";
constexpr std::string_view kTagsKey = "tags";
constexpr std::string_view kWeightKey = "weight";
constexpr std::string_view kZoneKey = "zone";
constexpr std::string_view kMetaKey = "meta";

constexpr std::uint32_t kMaxWeight = 10000;

std::string AsString(const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Best effort: a foreign writer's Metadata never makes an instance unusable,
// so anything unexpected here is ignored rather than rejected.
void ReadMetadata(const Json& metadata, ServiceInstance& instance) {
  if (!metadata.is_object()) return;
  for (const auto& [key, value] : metadata.items()) {
    if (key == kIdKey) continue;  // the key's suffix is the id
    if (key == kTagsKey && value.is_array()) {
      for (const auto& tag : value) {
        if (tag.is_string()) instance.tags.push_back(tag.get<std::string>());
      }
    } else if (key == kWeightKey && value.is_number_integer()) {
      auto weight = value.get<std::int64_t>();
      if (weight >= 1 && weight <= kMaxWeight) instance.weight = static_cast<std::uint32_t>(weight);
    } else if (key == kZoneKey && value.is_string()) {
      instance.zone = value.get<std::string>();
    } else if (key == kMetaKey && value.is_object()) {
      for (const auto& [meta_key, meta_value] : value.items()) {
        instance.metadata[meta_key] = AsString(meta_value);
      }
    } else if (key != kTagsKey && key != kWeightKey && key != kZoneKey && key != kMetaKey) {
      instance.metadata.try_emplace(key, AsString(value));
    }
  }
}

}  // namespace

std::string RootPrefix(std::string_view prefix) {
  if (prefix.empty()) return {};
  return std::string(prefix) + "/";
}

std::string ServicePrefix(std::string_view prefix, std::string_view service) {
  return RootPrefix(prefix) + std::string(service) + "/";
}

std::string InstanceKey(std::string_view prefix, std::string_view service, std::string_view id) {
  return ServicePrefix(prefix, service) + std::string(id);
}

std::string PrefixRangeEnd(std::string_view key_prefix) {
  std::string end(key_prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

std::string EncodeValue(const ServiceInstance& instance) {
  // ordered_json keeps Go's field order (Op, Addr, Metadata), so values look
  // exactly like the ones etcd's endpoints manager writes.
  nlohmann::ordered_json metadata = {{kIdKey, instance.id}, {kWeightKey, instance.weight}};
  if (!instance.tags.empty()) metadata[kTagsKey] = instance.tags;
  if (!instance.zone.empty()) metadata[kZoneKey] = instance.zone;
  if (!instance.metadata.empty()) metadata[kMetaKey] = instance.metadata;
  nlohmann::ordered_json value = {{"Op", 0}, {"Addr", instance.Address()}, {"Metadata", metadata}};
  return value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Result<ServiceInstance> DecodeValue(std::string_view service, std::string_view service_prefix,
                                    std::string_view key, std::string_view value) {
  if (!key.starts_with(service_prefix) || key.size() == service_prefix.size()) {
    return Fail(ErrorCode::kMalformed, "key is not <prefix>/<service>/<id>");
  }
  // A key is any bytes; an id that is not UTF-8 could not be written as
  // JSON (the CLI's --json, the gateway's /sd/prometheus and dashboard).
  if (!util::IsValidUtf8(key.substr(service_prefix.size())))
    return Fail(ErrorCode::kMalformed, "the key's instance id is not UTF-8");
  Json parsed = Json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Fail(ErrorCode::kMalformed, "value is not JSON");
  if (!parsed.is_object()) return Fail(ErrorCode::kMalformed, "value is not a JSON object");
  auto addr = parsed.find("Addr");
  if (addr == parsed.end() || !addr->is_string() || addr->get_ref<const std::string&>().empty()) {
    return Fail(ErrorCode::kMalformed, "value has no \"Addr\" string");
  }
  auto host_port = ParseHostPort(addr->get_ref<const std::string&>());
  if (!host_port) {
    return Fail(ErrorCode::kMalformed, "bad \"Addr\": " + host_port.error().message);
  }
  ServiceInstance instance;
  instance.service = std::string(service);
  instance.id = std::string(key.substr(service_prefix.size()));
  instance.host = std::move(host_port->host);
  instance.port = host_port->port;
  if (auto metadata = parsed.find("Metadata"); metadata != parsed.end()) {
    ReadMetadata(*metadata, instance);
  }
  return instance;
}

void MalformedLog::Warn(std::string_view url, std::string_view key, std::int64_t mod_revision,
                        const Error& error) {
  {
    std::lock_guard lock(mu_);
    // Forgetting everything now and then bounds memory; the worst case is
    // one repeated warning per malformed key.
    if (seen_.size() >= kMaxRemembered) seen_.clear();
    if (!seen_.emplace(std::string(key), mod_revision).second) return;
  }
  log::Get().warn("etcd {}: skipping malformed value at '{}' (mod_revision {}): {}", url, key,
                  mod_revision, error.message);
}

}  // namespace disco::etcd
