// What every `disco` command shares: the registry flag, errors, signals, output.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "disco/registry.h"
#include "disco/stop_signals.h"

namespace disco::cli {

// The registry URL from --registry, else $DISCO_REGISTRY, else etcd://127.0.0.1:2379.
struct GlobalOptions {
  std::string registry;
  int timeout_ms = 3000;
};

// Each command adds itself to `app` and returns; its callback runs it and
// stores the exit code in *exit_code.
void AddRegister(CLI::App& app, GlobalOptions& global, int* exit_code);
void AddDeregister(CLI::App& app, GlobalOptions& global, int* exit_code);
void AddList(CLI::App& app, GlobalOptions& global, int* exit_code);
void AddWatch(CLI::App& app, GlobalOptions& global, int* exit_code);
void AddPick(CLI::App& app, GlobalOptions& global, int* exit_code);
void AddDemo(CLI::App& app, GlobalOptions& global, int* exit_code);

// Builds the registry or prints a one-line error and returns nullptr.
std::unique_ptr<Registry> OpenRegistry(const GlobalOptions& global);

// Prints "disco: <what>: <error>" to stderr; returns the exit code to use.
int ReportError(const std::string& what, const Error& error);

// For one-shot commands that report errors themselves: keeps the library's
// own warnings (e.g. the resolver's "registry unreachable") off stderr, so
// that a failure is the one line the command prints.
void QuietLibraryWarnings();

std::string FormatInstance(const ServiceInstance& instance);
std::string Timestamp();

}  // namespace disco::cli
