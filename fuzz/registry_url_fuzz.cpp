// The registry URL parser (src/core/registry_url.cpp: ParseRegistryUrl,
// ParseHostPort), which reads --registry flags and DISCO_REGISTRY. What it
// accepts must be usable: a known scheme, endpoints with a host and a port
// (one for consul://; none needed for dns://), each of which reads back the same from its own
// ToString(); Redacted() never fails.
#include "disco/registry_url.h"
#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace disco;
  const std::string_view text = fuzz::AsText(data, size);
  if (auto hp = ParseHostPort(text, 2379)) {
    auto again = ParseHostPort(hp->ToString());
    fuzz::Check(again && *again == *hp, "a host:port does not read back from its ToString()");
  }
  auto url = ParseRegistryUrl(text);
  if (!url) {
    fuzz::Check(url.error().code == ErrorCode::kInvalidArgument && !url.error().message.empty(),
                "a refusal without kInvalidArgument and a message");
    return 0;
  }
  fuzz::Check(url->scheme == "etcd" || url->scheme == "consul" || url->scheme == "memory" ||
                  url->scheme == "dns",
              "an unknown scheme was accepted");
  if (url->scheme == "memory") {
    fuzz::Check(url->endpoints.empty(), "memory:// with endpoints");
  } else if (url->scheme != "dns") {  // dns:// without a server reads resolv.conf
    fuzz::Check(!url->endpoints.empty(), "no endpoints");
    // consul:// takes several agents too (issue 15); the backend bounds them.
  }
  for (const auto& endpoint : url->endpoints) {
    fuzz::Check(!endpoint.host.empty() && endpoint.port != 0, "an endpoint without host or port");
    auto again = ParseHostPort(endpoint.ToString());
    fuzz::Check(again && *again == endpoint, "an endpoint does not read back from its ToString()");
  }
  for (const auto& [key, value] : url->params) fuzz::Check(!key.empty(), "an empty parameter name");
  (void)url->Redacted();
  return 0;
}
