#include "gateway/route_config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <type_traits>

#include "disco/balancer.h"
#include "disco/service_instance.h"

namespace disco::gateway {
namespace {

using nlohmann::json;

Result<void> Invalid(const std::string& what) { return Fail(ErrorCode::kInvalidArgument, what); }

// Reads an optional number field within [min, max].
template <class T>
Result<void> ReadNumber(const json& object, const char* key, const std::string& where, T min, T max,
                        T& out) {
  auto it = object.find(key);
  if (it == object.end()) return {};
  if (!it->is_number()) return Invalid(where + "." + key + " must be a number");
  double value = it->get<double>();
  // 0.5 connections must not quietly become 0 (no pooling at all).
  if (std::is_integral_v<T> && value != std::floor(value))
    return Invalid(where + "." + key + " must be a whole number");
  if (value < static_cast<double>(min) || value > static_cast<double>(max)) {
    return Invalid(where + "." + key + " must be between " + std::to_string(min) + " and " +
                   std::to_string(max));
  }
  out = static_cast<T>(value);
  return {};
}

// A misspelt key ("max_idle" for "max_idle_per_endpoint") would otherwise
// leave the default in place without a word. Keys that start with '_' are
// the operator's own (JSON has no comments: "_why": "...").
Result<void> OnlyKnownKeys(const json& object, const std::string& where,
                           std::initializer_list<std::string_view> known) {
  std::string unknown;  // all of them: one fix-and-rerun, not one per key
  for (const auto& [key, value] : object.items()) {
    if (key.starts_with('_') || std::ranges::find(known, key) != known.end()) continue;
    unknown.append(unknown.empty() ? "\"" : ", \"").append(key).append("\"");
  }
  if (unknown.empty()) return {};
  std::string names;
  for (auto name : known) names.append(names.empty() ? "" : ", ").append(name);
  return Invalid(where + ": unknown key " + unknown + " (known: " + names +
                 "; keys starting with _ are ignored)");
}

Result<void> ReadBool(const json& object, const char* key, const std::string& where, bool& out) {
  auto it = object.find(key);
  if (it == object.end()) return {};
  if (!it->is_boolean()) return Invalid(where + "." + key + " must be true or false");
  out = it->get<bool>();
  return {};
}

Result<void> ReadMillis(const json& object, const char* key, const std::string& where,
                        std::int64_t min, std::int64_t max, std::chrono::milliseconds& out) {
  std::int64_t value = out.count();
  if (auto ok = ReadNumber<std::int64_t>(object, key, where, min, max, value); !ok) return ok;
  out = std::chrono::milliseconds(value);
  return {};
}

Result<RouteConfig> ParseRoute(const json& item, std::size_t index) {
  std::string where = "routes[" + std::to_string(index) + "]";
  if (!item.is_object()) return Fail(ErrorCode::kInvalidArgument, where + " must be an object");
  if (auto ok = OnlyKnownKeys(item, where,
                              {"prefix", "service", "policy", "auth", "strip_prefix",
                               "max_attempts", "per_try_timeout_ms", "deadline_ms",
                               "retry_budget_percent", "retry_budget_min", "rate_limit"});
      !ok) {
    return std::unexpected(ok.error());
  }
  RouteConfig route;
  auto prefix = item.find("prefix");
  if (prefix == item.end() || !prefix->is_string()) {
    return Fail(ErrorCode::kInvalidArgument,
                where + ".prefix must be a string such as \"/api/users\"");
  }
  route.prefix = prefix->get<std::string>();
  while (route.prefix.size() > 1 && route.prefix.back() == '/') route.prefix.pop_back();
  if (route.prefix.empty() || route.prefix.front() != '/' ||
      route.prefix.find_first_of("?#{}* ") != std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                where + ".prefix must start with '/' and hold no ?#{}* or spaces");
  }
  auto service = item.find("service");
  if (service == item.end() || !service->is_string()) {
    return Fail(ErrorCode::kInvalidArgument, where + ".service must be a service name");
  }
  route.service = service->get<std::string>();
  if (auto ok = ValidateName(where + ".service", route.service); !ok)
    return std::unexpected(ok.error());
  if (auto policy = item.find("policy"); policy != item.end()) {
    if (!policy->is_string())
      return Fail(ErrorCode::kInvalidArgument, where + ".policy must be a string");
    route.policy = policy->get<std::string>();
    if (auto ok = MakeBalancer(route.policy); !ok) {
      return Fail(ErrorCode::kInvalidArgument, where + ".policy: " + ok.error().message);
    }
  }
  Result<void> ok;
  if (ok = ReadBool(item, "auth", where, route.auth); !ok) return std::unexpected(ok.error());
  if (ok = ReadBool(item, "strip_prefix", where, route.strip_prefix); !ok)
    return std::unexpected(ok.error());
  if (ok = ReadNumber(item, "max_attempts", where, 1, 10, route.max_attempts); !ok)
    return std::unexpected(ok.error());
  if (ok = ReadMillis(item, "per_try_timeout_ms", where, 10, 600'000, route.per_try_timeout); !ok) {
    return std::unexpected(ok.error());
  }
  if (ok = ReadMillis(item, "deadline_ms", where, 10, 600'000, route.deadline); !ok)
    return std::unexpected(ok.error());
  if (ok = ReadNumber(item, "retry_budget_percent", where, 0.0, 100.0, route.retry_budget_percent);
      !ok) {
    return std::unexpected(ok.error());
  }
  if (ok = ReadNumber<std::uint32_t>(item, "retry_budget_min", where, 0, 100'000,
                                     route.retry_budget_min);
      !ok) {
    return std::unexpected(ok.error());
  }
  if (auto limit = item.find("rate_limit"); limit != item.end() && !limit->is_null()) {
    if (!limit->is_object())
      return Fail(ErrorCode::kInvalidArgument, where + ".rate_limit must be an object or null");
    RouteRateLimit rl;
    const std::string at = where + ".rate_limit";
    if (ok = OnlyKnownKeys(*limit, at, {"requests_per_second", "burst"}); !ok)
      return std::unexpected(ok.error());
    if (ok = ReadNumber(*limit, "requests_per_second", at, 0.001, 1e9, rl.requests_per_second);
        !ok) {
      return std::unexpected(ok.error());
    }
    if (ok = ReadNumber(*limit, "burst", at, 1.0, 1e9, rl.burst); !ok)
      return std::unexpected(ok.error());
    route.rate_limit = rl;
  }
  return route;
}

}  // namespace

GatewayConfig DefaultGatewayConfig() {
  GatewayConfig config;
  RouteConfig users;
  users.prefix = "/api/users";
  users.service = "user-service";
  RouteConfig orders;
  orders.prefix = "/api/orders";
  orders.service = "order-service";
  // Each login or registration costs a bcrypt upstream (~13 a second on two
  // cores at cost 12): one client gets a small share of that.
  RouteConfig login = users;
  login.prefix = "/api/users/login";
  login.rate_limit = RouteRateLimit{};
  RouteConfig registration = login;
  registration.prefix = "/api/users/register";
  config.routes = {users, orders, login, registration};
  return config;
}

bool PrefixMatches(std::string_view prefix, std::string_view path) {
  if (prefix == "/") return true;
  return path.starts_with(prefix) && (path.size() == prefix.size() || path[prefix.size()] == '/');
}

// Routes to one service share its channel, so they must agree on the
// channel's settings. One that leaves a setting out takes it from the first
// route to that service that sets it (else the default), so that
// setting it once is enough; two that set it differently stay a mismatch,
// which the gateway refuses at start, naming the route.
static void ShareServiceSettings(const json& items, std::vector<RouteConfig>& routes) {
  auto share = [&](const char* key, auto member) {
    for (std::size_t i = 0; i < routes.size(); ++i) {
      if (items[i].contains(key)) continue;
      for (std::size_t j = 0; j < routes.size(); ++j) {
        if (items[j].contains(key) && routes[j].service == routes[i].service) {
          routes[i].*member = routes[j].*member;
          break;
        }
      }
    }
  };
  share("policy", &RouteConfig::policy);
  share("retry_budget_percent", &RouteConfig::retry_budget_percent);
  share("retry_budget_min", &RouteConfig::retry_budget_min);
}

Result<GatewayConfig> ParseGatewayConfig(std::string_view text) {
  json root = json::parse(text, nullptr, false);
  if (root.is_discarded() || !root.is_object()) {
    return Fail(ErrorCode::kInvalidArgument, "the route config is not a JSON object");
  }
  if (auto ok = OnlyKnownKeys(root, "config",
                              {"routes", "rate_limit", "outlier_detection", "upstream_pool",
                               "response_limit"});
      !ok) {
    return std::unexpected(ok.error());
  }
  GatewayConfig config;
  auto routes = root.find("routes");
  if (routes == root.end() || !routes->is_array() || routes->empty()) {
    return Fail(ErrorCode::kInvalidArgument, "routes must be a non-empty array");
  }
  for (std::size_t i = 0; i < routes->size(); ++i) {
    auto route = ParseRoute((*routes)[i], i);
    if (!route) return std::unexpected(route.error());
    for (const auto& other : config.routes) {
      if (other.prefix == route->prefix) {
        return Fail(ErrorCode::kInvalidArgument, "routes[" + std::to_string(i) + "]: prefix " +
                                                     route->prefix + " appears twice");
      }
    }
    config.routes.push_back(std::move(*route));
  }
  ShareServiceSettings(*routes, config.routes);
  if (auto limit = root.find("rate_limit"); limit != root.end()) {
    if (!limit->is_object())
      return Fail(ErrorCode::kInvalidArgument, "rate_limit must be an object");
    auto& rl = config.rate_limit;
    Result<void> ok = OnlyKnownKeys(*limit, "rate_limit",
                                    {"requests_per_second", "burst", "trust_forwarded_for"});
    if (!ok) return std::unexpected(ok.error());
    if (ok = ReadNumber(*limit, "requests_per_second", "rate_limit", 0.0, 1e9,
                        rl.requests_per_second);
        !ok) {
      return std::unexpected(ok.error());
    }
    if (ok = ReadNumber(*limit, "burst", "rate_limit", 1.0, 1e9, rl.burst); !ok)
      return std::unexpected(ok.error());
    if (ok = ReadBool(*limit, "trust_forwarded_for", "rate_limit", rl.trust_forwarded_for); !ok) {
      return std::unexpected(ok.error());
    }
  }
  if (auto outlier = root.find("outlier_detection"); outlier != root.end()) {
    if (outlier->is_null()) {
      config.outlier_detection.reset();
    } else if (!outlier->is_object()) {
      return Fail(ErrorCode::kInvalidArgument, "outlier_detection must be an object or null");
    } else {
      OutlierOptions o;
      const std::string where = "outlier_detection";
      Result<void> ok = OnlyKnownKeys(*outlier, where,
                                      {"consecutive_failures", "base_ejection_ms",
                                       "max_ejection_ms", "max_ejected_percent",
                                       "eject_on_refused"});
      if (!ok) return std::unexpected(ok.error());
      if (ok = ReadNumber<std::uint32_t>(*outlier, "consecutive_failures", where, 1, 1000,
                                         o.consecutive_failures);
          !ok) {
        return std::unexpected(ok.error());
      }
      if (ok = ReadMillis(*outlier, "base_ejection_ms", where, 1, 3'600'000, o.base_ejection);
          !ok) {
        return std::unexpected(ok.error());
      }
      if (ok = ReadMillis(*outlier, "max_ejection_ms", where, 1, 3'600'000, o.max_ejection); !ok) {
        return std::unexpected(ok.error());
      }
      if (ok = ReadNumber<std::uint32_t>(*outlier, "max_ejected_percent", where, 0, 100,
                                         o.max_ejected_percent);
          !ok) {
        return std::unexpected(ok.error());
      }
      if (ok = ReadBool(*outlier, "eject_on_refused", where, o.eject_on_refused); !ok) {
        return std::unexpected(ok.error());
      }
      config.outlier_detection = o;
    }
  }
  // null: the defaults, as for outlier_detection's object.
  if (auto pool = root.find("upstream_pool"); pool != root.end() && !pool->is_null()) {
    if (!pool->is_object())
      return Fail(ErrorCode::kInvalidArgument, "upstream_pool must be an object or null");
    auto& up = config.upstream_pool;
    if (auto ok = OnlyKnownKeys(*pool, "upstream_pool", {"max_idle_per_endpoint", "idle_timeout_ms"});
        !ok) {
      return std::unexpected(ok.error());
    }
    if (auto ok = ReadNumber<std::size_t>(*pool, "max_idle_per_endpoint", "upstream_pool", 0,
                                          65'536, up.max_idle_per_endpoint);
        !ok) {
      return std::unexpected(ok.error());
    }
    if (auto ok = ReadMillis(*pool, "idle_timeout_ms", "upstream_pool", 100, 3'600'000,
                             up.idle_timeout);
        !ok) {
      return std::unexpected(ok.error());
    }
  }
  if (auto ok = ReadNumber<std::size_t>(root, "response_limit", "config", 1024,
                                        std::size_t{1} << 30, config.response_limit);
      !ok) {
    return std::unexpected(ok.error());
  }
  return config;
}

Result<GatewayConfig> LoadGatewayConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(ErrorCode::kInvalidArgument, "cannot read route config " + path);
  std::stringstream text;
  text << in.rdbuf();
  auto config = ParseGatewayConfig(text.str());
  if (!config) return Fail(ErrorCode::kInvalidArgument, path + ": " + config.error().message);
  return config;
}

}  // namespace disco::gateway
