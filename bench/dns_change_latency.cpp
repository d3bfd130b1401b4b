// Issue 16: how long after a DNS answer changes a dns:// watch reports it,
// by record TTL. dnsmasq (tests' fixture) serves one SRV record whose
// target's address flips on every sample (hosts file + SIGHUP); the watch
// re-resolves by TTL, so the delay should spread over [0, TTL] plus a query.
// Between samples a random pause in [0, TTL) keeps the change's phase
// against the refresh timer uniform.
//
// Then the steady-state cost: a fresh watch with the default jitter (10 %)
// on an answer that does not change, its queries counted in dnsmasq's query
// log over a window: SRV queries per minute per watched name (and A/AAAA,
// which should be none: dnsmasq sends the targets' addresses in the
// additional section).
//
//   disco_dns_change_bench [samples per TTL, default 20] [TTLs in s, default 1,2,5]
//                          [steady-state window in s, default 60; 0: skip]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "disco/registry.h"
#include "fixture/dnsmasq_server.h"
#include "fixture/update_recorder.h"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using disco::testing::DnsmasqServer;
using disco::testing::UpdateRecorder;

namespace {

std::size_t Count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// One watch with the default refresh settings, left alone for `window_s`
// seconds after its first answer; its queries counted in dnsmasq's log.
std::string SteadyQueries(DnsmasqServer& dns, const std::string& srv, const std::string& pod,
                          int ttl, int window_s) {
  auto registry = disco::MakeRegistry("dns://" + dns.address() + "?search=");
  if (!registry) return "| error: " + registry.error().ToString() + " |";
  UpdateRecorder recorder;
  auto watch = (*registry)->Watch(srv, recorder.Callback());
  if (!recorder.WaitLatest([](const disco::WatchUpdate& u) { return u.ok; }, 10s)) return "| no answer |";
  const std::string before = dns.ReadLog();
  std::this_thread::sleep_for(std::chrono::seconds(window_s));
  const std::string after = dns.ReadLog();
  watch.reset();
  auto per_minute = [&](const std::string& what) {
    return static_cast<double>(Count(after, what) - Count(before, what)) * 60.0 / window_s;
  };
  const double srv_qpm = per_minute("query[SRV] " + srv + " ");
  const double addr_qpm = per_minute("query[A] " + pod + " ") + per_minute("query[AAAA] " + pod + " ");
  char line[160];
  std::snprintf(line, sizeof line, "| %d s | %d | %.1f | %.1f | %.1f |", ttl, window_s, srv_qpm, addr_qpm,
                60.0 / (0.95 * ttl));
  return line;
}

}  // namespace

int main(int argc, char** argv) {
  const int samples = argc > 1 ? std::stoi(argv[1]) : 20;
  std::vector<int> ttls;
  std::stringstream list(argc > 2 ? argv[2] : "1,2,5");
  for (std::string item; std::getline(list, item, ',');) ttls.push_back(std::stoi(item));
  const int window_s = argc > 3 ? std::stoi(argv[3]) : 60;
  const std::string srv = "_http._tcp.web.default.svc.cluster.local";
  const std::string pod = "web-0.web.default.svc.cluster.local";
  std::mt19937 random(std::random_device{}());
  std::vector<std::string> steady;
  std::printf("| TTL | samples | p50 ms | p99 ms | max ms | errors |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (int ttl : ttls) {
    DnsmasqServer dns(ttl);
    dns.SetRecords(disco::testing::SrvHost(srv, pod, 8080, 1, 1));
    dns.SetHosts("127.0.5.1 " + pod + "\n");
    dns.Start();
    // The service name is the whole SRV name (name={service}, no search).
    auto registry = disco::MakeRegistry("dns://" + dns.address() +
                                        "?search=&min_refresh=100ms&max_refresh=60s&jitter=0");
    if (!registry) {
      std::fprintf(stderr, "%s\n", registry.error().ToString().c_str());
      return 1;
    }
    UpdateRecorder recorder;
    auto watch = (*registry)->Watch(srv, recorder.Callback());
    if (!recorder.WaitIds({"127.0.5.1:8080"}, 10s)) {
      std::fprintf(stderr, "no first answer\n%s\n", dns.ReadLog().c_str());
      return 1;
    }
    std::vector<double> ms;
    for (int i = 0; i < samples; ++i) {
      const std::string ip = "127.0.5." + std::to_string(2 + i % 2);
      dns.SetHosts(ip + " " + pod + "\n");
      const auto changed = Clock::now();
      dns.Reload();
      if (!recorder.WaitIds({ip + ":8080"}, std::chrono::seconds(ttl * 3 + 5))) {
        std::fprintf(stderr, "change %d not seen\n", i);
        return 1;
      }
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - changed).count());
      std::uniform_int_distribution<int> pause(0, ttl * 1000 - 1);
      std::this_thread::sleep_for(std::chrono::milliseconds(pause(random)));
    }
    std::sort(ms.begin(), ms.end());
    auto at = [&](double q) { return ms[std::min(ms.size() - 1, static_cast<std::size_t>(q * ms.size()))]; };
    std::printf("| %d s | %d | %.0f | %.0f | %.0f | %zu |\n", ttl, samples, at(0.5), at(0.99), ms.back(),
                recorder.errors());
    std::fflush(stdout);
    watch.reset();  // the steady-state watch is counted alone
    if (window_s > 0) steady.push_back(SteadyQueries(dns, srv, pod, ttl, window_s));
  }
  if (!steady.empty()) {
    std::printf("\n| TTL | window s | SRV queries/min | A+AAAA queries/min | expected SRV/min (60 / 0.95 TTL) |\n"
                "| ---: | ---: | ---: | ---: | ---: |\n");
    for (const auto& line : steady) std::printf("%s\n", line.c_str());
  }
  return 0;
}
