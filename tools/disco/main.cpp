// disco — register, list, watch and pick service instances in etcd or Consul,
// and run the demo client.
#include <cstdlib>
#include <iostream>

#include "common.h"

int main(int argc, char** argv) {
  disco::BlockStopSignals();
  CLI::App app{"disco: service registration and discovery on etcd and Consul, and the demo client",
               "disco"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "disco 0.2.0");

  disco::cli::GlobalOptions global;
  const char* env = std::getenv("DISCO_REGISTRY");
  global.registry = env && *env ? env : "etcd://127.0.0.1:2379";
  app.add_option(
         "--registry", global.registry,
         "Registry URL: etcd://host:port[,host:port...], consul://host:port[,host:port...][?token=T],\n"
         "memory://, dns://[server:port][?name=...] (read-only: SRV/A records, e.g. Kubernetes DNS)\n"
         "(env DISCO_REGISTRY; default etcd://127.0.0.1:2379)")
      ->envname("DISCO_REGISTRY")
      ->capture_default_str();
  app.add_option("--timeout-ms", global.timeout_ms,
                 "Bound on each registry request in milliseconds")
      ->envname("DISCO_TIMEOUT_MS")
      ->check(CLI::Range(100, 600000))
      ->capture_default_str();
  app.footer(
      "Examples:\n"
      "  disco register user-service --id user-1 --address 127.0.0.1 --port 5001\n"
      "  disco list user-service\n"
      "  disco watch user-service\n"
      "  disco pick user-service --policy ring_hash --key alice\n"
      "  disco demo --gateway http://127.0.0.1:8080");

  int exit_code = 0;
  disco::cli::AddRegister(app, global, &exit_code);
  disco::cli::AddDeregister(app, global, &exit_code);
  disco::cli::AddList(app, global, &exit_code);
  disco::cli::AddWatch(app, global, &exit_code);
  disco::cli::AddPick(app, global, &exit_code);
  disco::cli::AddDemo(app, global, &exit_code);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code;
}
