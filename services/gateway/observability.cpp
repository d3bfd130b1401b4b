#include "gateway/observability.h"

#include <nlohmann/json.hpp>

#include "disco/outlier.h"

namespace disco::gateway {
namespace {

using nlohmann::json;

std::string Join(const std::vector<std::string>& items) {
  // Prometheus' own SD uses ",a,b," for tag lists, so a regex can match ",a,".
  std::string out = ",";
  for (const auto& item : items) out += item + ",";
  return items.empty() ? std::string() : out;
}

// Label names must match [a-zA-Z_][a-zA-Z0-9_]*: other characters become '_'.
std::string LabelName(std::string_view key) {
  std::string out;
  for (char c : key) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    out += ok ? c : '_';
  }
  return out;
}

}  // namespace

std::string PrometheusTargetsJson(const Catalog& catalog) {
  json groups = json::array();
  for (const auto& entry : catalog.Entries()) {
    auto snapshot = entry.resolver->snapshot();
    for (const auto& endpoint : snapshot->endpoints) {
      const auto& instance = endpoint.instance;
      json labels = {{"__meta_disco_service", instance.service},
                     {"__meta_disco_instance", instance.id},
                     {"__meta_disco_address", endpoint.address},
                     {"__meta_disco_tags", Join(instance.tags)},
                     {"__meta_disco_zone", instance.zone},
                     {"__meta_disco_weight", std::to_string(instance.weight)}};
      for (const auto& [key, value] : instance.metadata)
        labels["__meta_disco_meta_" + LabelName(key)] = value;
      // Prometheus scrapes an instance serving HTTPS over HTTPS (its
      // scrape config still needs the CA: tls_config.ca_file).
      if (endpoint.tls) labels["__scheme__"] = "https";
      groups.push_back(
          {{"targets", json::array({endpoint.address})}, {"labels", std::move(labels)}});
    }
  }
  return groups.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string DashboardStateJson(const Catalog& catalog, const Proxy& proxy,
                               const GatewayIdentity& identity) {
  auto totals = proxy.totals();
  json services = json::array();
  for (const auto& entry : catalog.Entries()) {
    auto snapshot = entry.resolver->snapshot();
    json instances = json::array();
    for (const auto& endpoint : snapshot->endpoints) {
      const auto& stats = *endpoint.stats;
      instances.push_back({{"id", endpoint.instance.id},
                           {"address", endpoint.address},
                           {"health", "passing"},
                           {"ejected", stats.ejected.load(std::memory_order_relaxed)},
                           {"active", stats.active_requests.load(std::memory_order_relaxed)},
                           {"picks", stats.picks()},
                           {"successes", stats.successes()},
                           {"failures", stats.failures()},
                           {"times_ejected", stats.times_ejected.load(std::memory_order_relaxed)},
                           {"zone", endpoint.instance.zone},
                           {"weight", endpoint.instance.weight}});
    }
    auto* detector = entry.resolver->outlier_detector();
    services.push_back({{"name", entry.service},
                        {"policy", entry.policy},
                        {"routes", entry.routes},
                        {"stale_ms", entry.resolver->Staleness().count()},
                        {"registry_error", entry.resolver->LastError()},
                        {"ejected_now", detector ? detector->ejected_now() : 0},
                        {"instances", std::move(instances)}});
  }
  json state = {{"registry", identity.registry},
                {"gateway", {{"id", identity.id}}},
                {"catalog_error", catalog.LastError()},
                {"totals",
                 {{"requests", totals.requests},
                  {"retries", totals.retries},
                  {"ejections", totals.ejections},
                  {"rate_limited", totals.rate_limited},
                  {"unauthorized", totals.unauthorized},
                  {"budget_exhausted", totals.budget_exhausted}}},
                {"services", std::move(services)}};
  return state.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void AddObservabilityRoutes(http::Router& router, const Catalog& catalog, const Proxy& proxy,
                            const GatewayIdentity& identity, const TrafficHistory* history) {
  router.Add("GET", "/sd/prometheus",
             [&catalog](http::Request&) -> http::Awaitable<http::Response> {
               co_return http::Response::Json(200, PrometheusTargetsJson(catalog));
             });
  auto page = [](http::Request&) -> http::Awaitable<http::Response> {
    auto response =
        http::Response::Text(200, std::string(DashboardHtml()), "text/html; charset=utf-8");
    response.headers.emplace_back("Cache-Control", "no-cache");
    co_return response;
  };
  router.Add("GET", "/dashboard", page);
  router.Add("GET", "/dashboard/", page);
  router.Add("GET", "/dashboard/state",
             [&catalog, &proxy, &identity](http::Request&) -> http::Awaitable<http::Response> {
               auto response =
                   http::Response::Json(200, DashboardStateJson(catalog, proxy, identity));
               response.headers.emplace_back("Cache-Control", "no-store");
               co_return response;
             });
  router.Add("GET", "/dashboard/series",
             [history](http::Request&) -> http::Awaitable<http::Response> {
               if (history == nullptr) {
                 co_return http::Response::Error(404, "not_found",
                                                 "this gateway keeps no traffic history");
               }
               // Rendered by the history's own thread: nothing to compute here.
               auto response = http::Response::Json(200, *history->Json());
               response.headers.emplace_back("Cache-Control", "no-store");
               co_return response;
             });
}

}  // namespace disco::gateway
