// disco register: registers one instance and keeps it alive until SIGINT/SIGTERM.
#include <iostream>

#include "common.h"

namespace disco::cli {
namespace {

struct RegisterArgs {
  ServiceInstance instance;
  int ttl = 10;
  int port = 0;
  std::vector<std::string> meta;
  std::string http_check;
};

int Run(const GlobalOptions& global, RegisterArgs& args) {
  args.instance.port = static_cast<std::uint16_t>(args.port);
  for (const auto& kv : args.meta) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "disco: --meta '" << kv << "' must be KEY=VALUE" << std::endl;
      return 2;
    }
    args.instance.metadata[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (auto ok = Validate(args.instance); !ok) return ReportError("register", ok.error());
  auto registry = OpenRegistry(global);
  if (!registry) return 2;
  RegisterOptions options;
  options.ttl = std::chrono::seconds(args.ttl);
  options.http_check_url = args.http_check;
  auto registration = registry->Register(args.instance, options);
  if (!registration) {
    return ReportError("register " + args.instance.service + "/" + args.instance.id + " in " + registry->url(),
                       registration.error());
  }
  std::cout << "registered " << args.instance.service << "/" << args.instance.id << " at "
            << args.instance.Address() << " in " << registry->url() << " (ttl " << args.ttl
            << "s); keeping it alive until SIGINT/SIGTERM" << std::endl;
  int signal = WaitForStopSignal();
  auto done = (*registration)->Deregister();
  if (!done) {
    return ReportError("deregister " + args.instance.service + "/" + args.instance.id + " on signal " +
                           std::to_string(signal),
                       done.error());
  }
  std::cout << "deregistered " << args.instance.service << "/" << args.instance.id << std::endl;
  return 0;
}

}  // namespace

void AddRegister(CLI::App& app, GlobalOptions& global, int* exit_code) {
  auto args = std::make_shared<RegisterArgs>();
  auto* cmd = app.add_subcommand("register",
                                 "Register an instance and keep it alive in the foreground; "
                                 "deregister on SIGINT/SIGTERM");
  cmd->add_option("service", args->instance.service, "Service name")->required();
  cmd->add_option("--id", args->instance.id, "Instance id, unique within the service")->required();
  cmd->add_option("--address", args->instance.host, "Host or IP callers connect to")->required();
  cmd->add_option("--port", args->port, "Port callers connect to")->required()->check(CLI::Range(1, 65535));
  cmd->add_option("--ttl", args->ttl, "Seconds without refresh before the registry drops the instance")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  cmd->add_option("--tag", args->instance.tags, "A tag (repeatable)");
  cmd->add_option("--meta", args->meta, "Metadata KEY=VALUE (repeatable)");
  cmd->add_option("--weight", args->instance.weight, "Relative weight for weighted policies (1-10000)")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  cmd->add_option("--zone", args->instance.zone, "Locality of the instance");
  cmd->add_option("--http-check", args->http_check,
                  "Consul only: URL Consul polls for health instead of TTL heartbeats");
  cmd->callback([&global, args, exit_code] {
    *exit_code = Run(global, *args);
  });
}

}  // namespace disco::cli
