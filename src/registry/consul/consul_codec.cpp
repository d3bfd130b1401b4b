#include "registry/consul/consul_codec.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

namespace disco::consul {
namespace {

using nlohmann::json;

int Severity(HealthState state) {
  switch (state) {
    case HealthState::kPassing:
      return 0;
    case HealthState::kWarning:
      return 1;
    case HealthState::kCritical:
      return 2;
  }
  return 2;
}

// Unknown statuses (a future Consul, maintenance...) count as critical: an
// instance we cannot vouch for is not handed out.
HealthState ParseStatus(const json& status) {
  if (status.is_string()) {
    const auto& text = status.get_ref<const std::string&>();
    if (text == "passing") return HealthState::kPassing;
    if (text == "warning") return HealthState::kWarning;
  }
  return HealthState::kCritical;
}

const json* Field(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string StringField(const json& object, const char* key) {
  const json* value = Field(object, key);
  return value && value->is_string() ? value->get<std::string>() : std::string();
}

// Decodes one element of the health array; returns an empty optional and a
// reason when it cannot be used.
std::optional<InstanceStatus> DecodeEntry(const json& entry, std::string* why) {
  const json* service = Field(entry, "Service");
  if (!service || !service->is_object()) {
    *why = "entry without a Service object";
    return std::nullopt;
  }
  InstanceStatus out;
  ServiceInstance& instance = out.instance;
  instance.service = StringField(*service, "Service");
  instance.id = StringField(*service, "ID");
  if (instance.id.empty()) {
    *why = "entry of service '" + instance.service + "' without an ID";
    return std::nullopt;
  }
  const json* port = Field(*service, "Port");
  if (!port || !port->is_number_integer() || port->get<std::int64_t>() < 1 ||
      port->get<std::int64_t>() > 65535) {
    *why = "instance '" + instance.id + "' has no usable Port (want 1-65535)";
    return std::nullopt;
  }
  instance.port = static_cast<std::uint16_t>(port->get<std::int64_t>());
  instance.host = StringField(*service, "Address");
  if (instance.host.empty()) {
    const json* node = Field(entry, "Node");
    if (node) instance.host = StringField(*node, "Address");
  }
  if (instance.host.empty()) {
    *why = "instance '" + instance.id + "' has no Service.Address and no Node.Address";
    return std::nullopt;
  }
  if (const json* tags = Field(*service, "Tags"); tags && tags->is_array()) {
    for (const auto& tag : *tags) {
      if (tag.is_string()) instance.tags.push_back(tag.get<std::string>());
    }
  }
  if (const json* meta = Field(*service, "Meta"); meta && meta->is_object()) {
    for (const auto& [key, value] : meta->items()) {
      if (!value.is_string()) continue;
      if (key == kZoneMetaKey) {
        instance.zone = value.get<std::string>();
      } else {
        instance.metadata.emplace(key, value.get<std::string>());
      }
    }
  }
  if (const json* weights = Field(*service, "Weights")) {
    if (const json* passing = Field(*weights, "Passing"); passing && passing->is_number_integer()) {
      instance.weight = static_cast<std::uint32_t>(
          std::clamp<std::int64_t>(passing->get<std::int64_t>(), 1, 10000));
    }
  }
  int worst = -1;
  if (const json* checks = Field(entry, "Checks"); checks && checks->is_array()) {
    for (const auto& check : *checks) {
      if (!check.is_object()) continue;
      HealthState state = ParseStatus(check.contains("Status") ? check["Status"] : json());
      if (Severity(state) > worst) {
        worst = Severity(state);
        out.health = state;
        out.detail = state == HealthState::kPassing ? std::string() : StringField(check, "Output");
      }
    }
  }
  return out;
}

}  // namespace

std::string CheckId(std::string_view instance_id) { return "service:" + std::string(instance_id); }

std::string GoDuration(std::chrono::milliseconds duration) {
  if (duration.count() % 1000 == 0) return std::to_string(duration.count() / 1000) + "s";
  return std::to_string(duration.count()) + "ms";
}

std::string EncodeRegistration(const ServiceInstance& instance, const RegisterOptions& options,
                               std::chrono::milliseconds http_interval) {
  json meta = json::object();
  for (const auto& [key, value] : instance.metadata) meta[key] = value;
  if (!instance.zone.empty()) meta[std::string(kZoneMetaKey)] = instance.zone;
  json check = {{"CheckID", CheckId(instance.id)}, {"Status", "passing"}};
  if (options.http_check_url.empty()) {
    check["Name"] = "disco TTL heartbeat";
    check["TTL"] = GoDuration(options.ttl);
  } else {
    check["Name"] = "disco HTTP health check";
    check["HTTP"] = options.http_check_url;
    check["Interval"] = GoDuration(http_interval);
    check["Timeout"] = GoDuration(http_interval);
  }
  if (options.deregister_critical_after.count() > 0) {
    check["DeregisterCriticalServiceAfter"] = GoDuration(options.deregister_critical_after);
  }
  json body = {{"ID", instance.id},
               {"Name", instance.service},
               {"Tags", instance.tags},
               {"Address", instance.host},
               {"Port", instance.port},
               {"Meta", meta},
               {"Weights", {{"Passing", instance.weight}, {"Warning", 1}}},
               {"Check", check}};
  return body.dump();
}

Result<DecodedHealth> DecodeHealth(std::string_view body) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Fail(ErrorCode::kMalformed, "health answer is not JSON");
  if (!parsed.is_array()) return Fail(ErrorCode::kMalformed, "health answer is not a JSON array");
  DecodedHealth out;
  try {
    for (const auto& entry : parsed) {
      std::string why;
      if (auto status = DecodeEntry(entry, &why)) {
        out.instances.push_back(std::move(*status));
      } else {
        out.warnings.push_back(std::move(why));
      }
    }
  } catch (const std::exception& e) {
    // DecodeEntry checks every type it reads; this is a last line of defence.
    return Fail(ErrorCode::kMalformed, std::string("health answer: ") + e.what());
  }
  // By id, the healthiest first among entries of one id.
  std::stable_sort(out.instances.begin(), out.instances.end(),
                   [](const InstanceStatus& a, const InstanceStatus& b) {
                     if (a.instance.id != b.instance.id) return a.instance.id < b.instance.id;
                     return Severity(a.health) < Severity(b.health);
                   });
  // Two entries with one ID (the same service ID on two nodes: a registrant
  // that moved to another agent while the old one still holds its copy)
  // would make the list ambiguous for id-keyed consumers: keep the
  // healthiest, say so.
  auto duplicate = std::adjacent_find(out.instances.begin(), out.instances.end(),
                                      [](const InstanceStatus& a, const InstanceStatus& b) {
                                        return a.instance.id == b.instance.id;
                                      });
  while (duplicate != out.instances.end()) {
    out.warnings.push_back("instance id '" + duplicate->instance.id +
                           "' appears more than once; keeping one");
    out.instances.erase(duplicate + 1);
    duplicate = std::adjacent_find(out.instances.begin(), out.instances.end(),
                                   [](const InstanceStatus& a, const InstanceStatus& b) {
                                     return a.instance.id == b.instance.id;
                                   });
  }
  return out;
}

Result<std::vector<std::string>> DecodeServices(std::string_view body) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return Fail(ErrorCode::kMalformed, "catalog services answer is not a JSON object");
  }
  std::vector<std::string> out;
  for (const auto& [name, tags] : parsed.items()) {
    if (name != "consul") out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace disco::consul
