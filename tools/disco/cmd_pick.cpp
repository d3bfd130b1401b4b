// disco pick: resolves a service and picks instances with a balancing policy.
#include <iostream>
#include <nlohmann/json.hpp>

#include "common.h"
#include "disco/resolver.h"

namespace disco::cli {
namespace {

struct Args {
  std::string service;
  std::string policy = "round_robin";
  std::string key;
  int count = 1;
  bool json = false;
};

int Run(const GlobalOptions& global, const Args& args) {
  QuietLibraryWarnings();  // an unreachable registry is reported below, once
  auto registry = OpenRegistry(global);
  if (!registry) return 2;
  ResolverOptions options;
  options.policy = args.policy;
  auto resolver = Resolver::Make(*registry, args.service, options);
  if (!resolver) return ReportError("pick", resolver.error());
  if (!(*resolver)->WaitReady(std::chrono::milliseconds(global.timeout_ms))) {
    auto error = (*resolver)->LastError();
    std::cerr << "disco: pick " << args.service << " in " << registry->url() << ": "
              << (error.empty() ? "timeout: no answer from the registry" : error) << std::endl;
    return 1;
  }
  PickContext context;
  context.hash_key = args.key;
  auto out = nlohmann::json::array();
  for (int i = 0; i < args.count; ++i) {
    auto endpoint = (*resolver)->Pick(context);
    if (!endpoint) {
      std::cerr << "disco: pick " << args.service << ": no healthy instance" << std::endl;
      return 1;
    }
    if (args.json) {
      out.push_back({{"id", endpoint->instance.id}, {"address", endpoint->address}});
    } else {
      std::cout << endpoint->instance.id << "  " << endpoint->address << "\n";
    }
  }
  if (args.json) std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

void AddPick(CLI::App& app, GlobalOptions& global, int* exit_code) {
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("pick", "Pick an instance of SERVICE with a balancing policy");
  cmd->add_option("service", args->service, "Service name")->required();
  std::string policies;
  for (auto name : BalancerNames()) policies += (policies.empty() ? "" : ", ") + std::string(name);
  cmd->add_option("--policy", args->policy, "Balancing policy: " + policies)->capture_default_str();
  cmd->add_option("--key", args->key, "Hash key for consistent-hash policies (ring_hash)");
  cmd->add_option("--count", args->count, "How many picks to make and print")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([&global, args, exit_code] { *exit_code = Run(global, *args); });
}

}  // namespace disco::cli
