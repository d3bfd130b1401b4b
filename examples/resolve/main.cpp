// Registers two instances in a registry, resolves the service and picks.
//   resolve_example [REGISTRY_URL]     (default memory://example)
#include <disco/registry.h>
#include <disco/resolver.h>

#include <iostream>

int main(int argc, char** argv) {
  std::string url = argc > 1 ? argv[1] : "memory://example";
  auto registry = disco::MakeRegistry(url);
  if (!registry) {
    std::cerr << "registry: " << registry.error().ToString() << "\n";
    return 1;
  }
  std::vector<std::unique_ptr<disco::Registration>> registrations;
  for (std::uint16_t port : {7001, 7002}) {
    disco::ServiceInstance instance{.service = "hello",
                                    .id = "hello-" + std::to_string(port),
                                    .host = "127.0.0.1",
                                    .port = port};
    auto registration = (*registry)->Register(instance);
    if (!registration) {
      std::cerr << "register: " << registration.error().ToString() << "\n";
      return 1;
    }
    registrations.push_back(std::move(*registration));
  }
  auto resolver = disco::Resolver::Make(**registry, "hello", {.policy = "round_robin"});
  if (!resolver || !(*resolver)->WaitReady(std::chrono::seconds(3))) {
    std::cerr << "resolver not ready\n";
    return 1;
  }
  for (int i = 0; i < 4; ++i) {
    auto endpoint = (*resolver)->Pick();
    std::cout << (endpoint ? endpoint->address : std::string("none")) << "\n";
  }
  return 0;
}
