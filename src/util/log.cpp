#include "util/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace disco::log {

spdlog::logger& Get() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("disco")) return existing;
    auto created = spdlog::stderr_color_mt("disco");
    created->set_level(spdlog::level::warn);
    return created;
  }();
  return *logger;
}

}  // namespace disco::log
