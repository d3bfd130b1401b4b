// disco watch: prints every change of a service's healthy instances as it happens.
#include <iostream>
#include <map>
#include <mutex>

#include <nlohmann/json.hpp>

#include "common.h"

namespace disco::cli {
namespace {

struct Args {
  std::string service;
  bool json = false;
};

// Turns the full lists a watch delivers into printed changes.
class ChangePrinter {
 public:
  ChangePrinter(std::string service, bool json) : service_(std::move(service)), json_(json) {}

  void OnUpdate(const WatchUpdate& update) {
    std::lock_guard lock(mu_);
    if (!update.ok) {
      if (!unreachable_) {
        Print("unreachable", nullptr, update.error.ToString());
        unreachable_ = true;
      }
      return;
    }
    if (unreachable_) {
      Print("reconnected", nullptr, {});
      unreachable_ = false;
    }
    std::map<std::string, ServiceInstance> fresh;
    for (const auto& instance : update.instances) fresh.emplace(instance.id, instance);
    if (first_) {
      Print("snapshot", nullptr, std::to_string(fresh.size()) + " instance(s)");
      for (const auto& [id, instance] : fresh) Print("=", &instance, {});
    } else {
      for (const auto& [id, instance] : current_) {
        if (!fresh.contains(id)) Print("-", &instance, {});
      }
      for (const auto& [id, instance] : fresh) {
        auto it = current_.find(id);
        if (it == current_.end()) {
          Print("+", &instance, {});
        } else if (!(it->second == instance)) {
          Print("~", &instance, {});
        }
      }
    }
    first_ = false;
    current_ = std::move(fresh);
  }

  bool first() {
    std::lock_guard lock(mu_);
    return first_;
  }

 private:
  void Print(const std::string& what, const ServiceInstance* instance, const std::string& note) {
    if (json_) {
      static const std::map<std::string, std::string> kNames = {
          {"=", "present"}, {"+", "added"}, {"-", "removed"}, {"~", "changed"}};
      nlohmann::json line = {{"time", Timestamp()}, {"service", service_},
                             {"event", kNames.contains(what) ? kNames.at(what) : what}};
      if (instance) {
        line["id"] = instance->id;
        line["address"] = instance->Address();
      }
      if (!note.empty()) line["note"] = note;
      std::cout << line.dump() << std::endl;
      return;
    }
    std::cout << Timestamp() << "  " << service_ << "  " << what;
    if (instance) std::cout << " " << FormatInstance(*instance);
    if (!note.empty()) std::cout << " " << note;
    std::cout << std::endl;
  }

  const std::string service_;
  const bool json_;
  std::mutex mu_;
  bool first_ = true;
  bool unreachable_ = false;
  std::map<std::string, ServiceInstance> current_;
};

int Run(const GlobalOptions& global, const Args& args) {
  if (auto ok = ValidateName("service name", args.service); !ok) return ReportError("watch", ok.error());
  auto registry = OpenRegistry(global);
  if (!registry) return 2;
  // Fail fast if the registry cannot be reached at start: one List call.
  if (auto probe = registry->List(args.service); !probe) {
    return ReportError("watch " + args.service + " in " + registry->url(), probe.error());
  }
  ChangePrinter printer(args.service, args.json);
  auto watch = registry->Watch(args.service, [&printer](const WatchUpdate& u) { printer.OnUpdate(u); });
  WaitForStopSignal();
  watch.reset();
  return 0;
}

}  // namespace

void AddWatch(CLI::App& app, GlobalOptions& global, int* exit_code) {
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "watch", "Print the healthy instances of SERVICE, then every change as it happens, until SIGINT/SIGTERM");
  cmd->add_option("service", args->service, "Service name")->required();
  cmd->add_flag("--json", args->json, "Print one JSON object per line");
  cmd->callback([&global, args, exit_code] { *exit_code = Run(global, *args); });
}

}  // namespace disco::cli
