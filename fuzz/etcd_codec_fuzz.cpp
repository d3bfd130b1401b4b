// The etcd value decoder (src/registry/etcd/etcd_codec.cpp: DecodeValue),
// which reads what any writer put under the prefix, Go's endpoints manager
// included. Input: the instance id (the key's last part), a newline, the
// value. What it accepts must be usable (host, port, weight 1-10000) and
// survive our own encoding: EncodeValue's output decodes to the same
// instance.
#include "fuzz_check.h"
#include "registry/etcd/etcd_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace disco;
  const std::string_view text = fuzz::AsText(data, size);
  const std::size_t newline = text.find('\n');
  const std::string_view id = text.substr(0, newline);
  const std::string_view value =
      newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
  const std::string prefix = etcd::ServicePrefix("disco", "svc");
  const std::string key = prefix + std::string(id);
  auto instance = etcd::DecodeValue("svc", prefix, key, value);
  if (!instance) {
    fuzz::Check(instance.error().code == ErrorCode::kMalformed, "a refusal that is not kMalformed");
    return 0;
  }
  fuzz::Check(instance->service == "svc" && instance->id == id, "service or id not from the key");
  fuzz::Check(!instance->host.empty() && instance->port != 0, "an instance without host or port");
  fuzz::Check(instance->weight >= 1 && instance->weight <= 10000, "a weight outside 1-10000");
  auto again = etcd::DecodeValue("svc", prefix, key, etcd::EncodeValue(*instance));
  fuzz::Check(again.has_value(), "EncodeValue's output does not decode");
  fuzz::Check(*again == *instance, "an instance changes through EncodeValue and DecodeValue");
  // The range end covers every key under the prefix.
  fuzz::Check(etcd::PrefixRangeEnd(key) > key, "PrefixRangeEnd does not follow the key");
  return 0;
}
