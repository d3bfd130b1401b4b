// The Consul codec's decoders (src/registry/consul/consul_codec.cpp) on any agent
// answer: they treat answers as untrusted and must never throw or crash.
// What DecodeHealth keeps must be usable (id, host, port 1-65535, weight
// 1-10000), sorted by id without duplicates, and must survive our own
// encoding: EncodeRegistration's body, read back as the agent would answer
// it, decodes to the same instance.
#include <nlohmann/json.hpp>

#include "fuzz_check.h"
#include "registry/consul/consul_codec.h"

namespace disco::fuzz {
namespace {

using nlohmann::json;

void CheckRoundTrip(const ServiceInstance& instance) {
  RegisterOptions options;
  const std::string registration =
      consul::EncodeRegistration(instance, options, std::chrono::seconds(10));
  json service = json::parse(registration);
  // The agent answers the registered service under "Service", not "Name".
  service["Service"] = service["Name"];
  service.erase("Name");
  const json answer = json::array({{{"Service", service}, {"Checks", json::array()}}});
  auto decoded = consul::DecodeHealth(answer.dump());
  Check(decoded && decoded->instances.size() == 1, "our own registration does not decode");
  Check(decoded->instances[0].instance == instance,
        "an instance changes through EncodeRegistration and DecodeHealth");
}

}  // namespace
}  // namespace disco::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace disco;
  const std::string_view text = fuzz::AsText(data, size);
  if (auto services = consul::DecodeServices(text)) {
    fuzz::Check(std::is_sorted(services->begin(), services->end()), "service names not sorted");
  }
  auto health = consul::DecodeHealth(text);
  if (!health) {
    fuzz::Check(health.error().code == ErrorCode::kMalformed, "a refusal that is not kMalformed");
    return 0;
  }
  const auto& instances = health->instances;
  for (std::size_t i = 0; i < instances.size(); ++i) {
    const ServiceInstance& instance = instances[i].instance;
    fuzz::Check(i == 0 || instances[i - 1].instance.id < instance.id,
                "instances not sorted by id, or an id twice");
    fuzz::Check(!instance.id.empty() && !instance.host.empty() && instance.port != 0,
                "an instance without id, host or port");
    fuzz::Check(instance.weight >= 1 && instance.weight <= 10000, "a weight outside 1-10000");
    fuzz::CheckRoundTrip(instance);
  }
  return 0;
}
