// disco deregister: removes one instance's registration.
#include <iostream>

#include "common.h"

namespace disco::cli {

void AddDeregister(CLI::App& app, GlobalOptions& global, int* exit_code) {
  struct Args {
    std::string service;
    std::string id;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "deregister",
      "Remove an instance from the registry (a running registrant registers itself again; stop it to "
      "remove it for good)");
  cmd->add_option("service", args->service, "Service name")->required();
  cmd->add_option("--id", args->id, "Instance id")->required();
  cmd->callback([&global, args, exit_code] {
    if (auto ok = ValidateName("service name", args->service); !ok) {
      *exit_code = ReportError("deregister", ok.error());
      return;
    }
    if (auto ok = ValidateName("instance id", args->id); !ok) {
      *exit_code = ReportError("deregister", ok.error());
      return;
    }
    auto registry = OpenRegistry(global);
    if (!registry) {
      *exit_code = 2;
      return;
    }
    if (auto ok = registry->Deregister(args->service, args->id); !ok) {
      *exit_code = ReportError("deregister " + args->service + "/" + args->id + " in " + registry->url(),
                               ok.error());
      return;
    }
    std::cout << "deregistered " << args->service << "/" << args->id << std::endl;
  });
}

}  // namespace disco::cli
