#include "registry_bench_util.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fixture/http_client.h"
#include "registry/consul/consul_stats.h"

namespace disco::bench {

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(rank, values.size() - 1)];
}

ServiceInstance Instance(const std::string& service, const std::string& id, int port) {
  ServiceInstance instance;
  instance.service = service;
  instance.id = id;
  instance.host = "127.0.0.1";
  instance.port = static_cast<std::uint16_t>(port);
  return instance;
}

std::unique_ptr<Registry> OpenOrExit(const testing::RegistryBackend& backend, const char* tool) {
  auto registry = MakeRegistry(backend.url());
  if (!registry) {
    std::cerr << tool << ": " << registry.error().ToString() << std::endl;
    std::exit(1);
  }
  return std::move(*registry);
}

std::string Fixed2(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f", value);
  return buffer;
}

namespace {

// The client ports of an etcd URL: etcd://h:p[,h:p...][?...].
std::vector<std::uint16_t> EtcdPorts(const std::string& url) {
  std::vector<std::uint16_t> ports;
  auto hosts = url.substr(url.find("://") + 3);
  hosts = hosts.substr(0, hosts.find('?'));
  std::stringstream list(hosts);
  for (std::string endpoint; std::getline(list, endpoint, ',');) {
    const auto colon = endpoint.rfind(':');
    if (colon != std::string::npos)
      ports.push_back(static_cast<std::uint16_t>(std::atoi(endpoint.c_str() + colon + 1)));
  }
  return ports;
}

// etcd's own Prometheus counters (GET /metrics on each client port): gRPC
// messages received per method, summed over `methods` and the members.
long long EtcdMessages(const std::string& url, const std::vector<std::string>& methods) {
  long long total = 0;
  const std::string kCounter = "grpc_server_msg_received_total{";
  for (const auto port : EtcdPorts(url)) {
    auto metrics = testing::HttpRequest(port, "GET", "/metrics");
    if (metrics.status != 200) return -1;
    std::size_t pos = 0;
    while ((pos = metrics.body.find(kCounter, pos)) != std::string::npos) {
      auto end = metrics.body.find('\n', pos);
      std::string line = metrics.body.substr(pos, end - pos);
      pos = end;
      for (const auto& method : methods) {
        if (line.find("grpc_method=\"" + method + "\"") != std::string::npos)
          total += std::atoll(line.c_str() + line.rfind(' ') + 1);
      }
    }
  }
  return total;
}

}  // namespace

long long RequestsSoFar(const testing::RegistryBackend& backend, bool heartbeat) {
  const auto url = backend.url();
  if (url.starts_with("consul://")) {
    if (heartbeat) {
      return static_cast<long long>(consul::RequestsSent(consul::RequestKind::kHeartbeat) +
                                    consul::RequestsSent(consul::RequestKind::kRegister));
    }
    return static_cast<long long>(consul::RequestsSent(consul::RequestKind::kWatch));
  }
  if (url.starts_with("etcd://")) {
    if (heartbeat) return EtcdMessages(url, {"LeaseKeepAlive", "LeaseGrant", "Put", "Txn"});
    return EtcdMessages(url, {"Watch", "Range"});
  }
  return -1;
}

double ChildrenCpuSeconds() {
  const auto self = ::getpid();
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  double total = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::ifstream in(entry.path() / "stat");
    std::string text;
    if (!in || !std::getline(in, text)) continue;
    // Fields after the command (which may hold spaces): state ppid ... utime(14) stime(15).
    const auto close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(text.substr(close + 2));
    std::string state;
    long ppid = 0;
    fields >> state >> ppid;
    if (ppid != self) continue;
    std::string skip;
    for (int i = 0; i < 9; ++i) fields >> skip;  // pgrp .. cmajflt
    double utime = 0, stime = 0;
    fields >> utime >> stime;
    total += (utime + stime) / ticks;
  }
  return total;
}

long long ResidentBytes() {
  std::ifstream in("/proc/self/statm");
  long long pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

}  // namespace disco::bench
