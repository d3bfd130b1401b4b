#include "common.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>

#include "disco/registry_url.h"

namespace disco::cli {

std::unique_ptr<Registry> OpenRegistry(const GlobalOptions& global) {
  RegistryOptions options;
  options.request_timeout = std::chrono::milliseconds(global.timeout_ms);
  auto registry = MakeRegistry(global.registry, options);
  if (!registry) {
    // Never the URL as typed: it may hold a password or token.
    auto parsed = ParseRegistryUrl(global.registry);
    ReportError("registry " + (parsed ? parsed->Redacted() : std::string("URL")), registry.error());
    return nullptr;
  }
  return std::move(*registry);
}

int ReportError(const std::string& what, const Error& error) {
  std::cerr << "disco: " << what << ": " << error.ToString() << std::endl;
  return error.code == ErrorCode::kInvalidArgument ? 2 : 1;
}

void QuietLibraryWarnings() {
  // The library logs through the spdlog logger named "disco" and adopts one
  // that already exists.
  auto logger = spdlog::get("disco");
  if (!logger) logger = spdlog::stderr_color_mt("disco");
  logger->set_level(spdlog::level::err);
}

std::string FormatInstance(const ServiceInstance& instance) {
  std::string out = instance.id + "  " + instance.Address();
  if (instance.weight != 1) out += "  weight=" + std::to_string(instance.weight);
  if (!instance.zone.empty()) out += "  zone=" + instance.zone;
  if (!instance.tags.empty()) {
    out += "  tags=";
    for (std::size_t i = 0; i < instance.tags.size(); ++i) out += (i ? "," : "") + instance.tags[i];
  }
  for (const auto& [key, value] : instance.metadata) out += "  " + key + "=" + value;
  return out;
}

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  auto seconds = std::chrono::system_clock::to_time_t(now);
  auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(millis));
  return buf;
}

}  // namespace disco::cli
