// disco list: services, or the instances of one service.
#include <iostream>

#include <nlohmann/json.hpp>

#include "common.h"

namespace disco::cli {
namespace {

nlohmann::json ToJson(const InstanceStatus& status) {
  const auto& i = status.instance;
  return {{"service", i.service}, {"id", i.id},         {"host", i.host},     {"port", i.port},
          {"address", i.Address()}, {"tags", i.tags},   {"metadata", i.metadata}, {"weight", i.weight},
          {"zone", i.zone},       {"health", HealthStateName(status.health)}, {"detail", status.detail}};
}

struct Args {
  std::string service;
  bool all = false;
  bool json = false;
};

int Run(const GlobalOptions& global, const Args& args) {
  auto registry = OpenRegistry(global);
  if (!registry) return 2;
  if (args.service.empty()) {
    auto services = registry->Services();
    if (!services) return ReportError("list services in " + registry->url(), services.error());
    if (args.json) {
      std::cout << nlohmann::json(*services).dump() << std::endl;
    } else {
      for (const auto& name : *services) std::cout << name << "\n";
    }
    return 0;
  }
  if (auto ok = ValidateName("service name", args.service); !ok) return ReportError("list", ok.error());
  auto list = registry->List(args.service, args.all);
  if (!list) return ReportError("list " + args.service + " in " + registry->url(), list.error());
  if (args.json) {
    auto out = nlohmann::json::array();
    for (const auto& status : *list) out.push_back(ToJson(status));
    std::cout << out.dump() << std::endl;
    return 0;
  }
  if (list->empty()) {
    std::cerr << "no " << (args.all ? "" : "healthy ") << "instances of " << args.service << std::endl;
    return 0;
  }
  for (const auto& status : *list) {
    std::cout << FormatInstance(status.instance);
    if (args.all) std::cout << "  [" << HealthStateName(status.health) << "]";
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

void AddList(CLI::App& app, GlobalOptions& global, int* exit_code) {
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("list", "List services, or the healthy instances of SERVICE");
  cmd->add_option("service", args->service, "Service name (omit to list service names)");
  cmd->add_flag("--all", args->all, "Include unhealthy instances, with their health state");
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([&global, args, exit_code] { *exit_code = Run(global, *args); });
}

}  // namespace disco::cli
