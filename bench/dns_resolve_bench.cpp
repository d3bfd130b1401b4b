// Issue 16: what one resolution costs through a dns:// registry against
// glibc's getaddrinfo, for the same names served by one local dnsmasq (the
// tests' fixture, 127.0.0.1 on a free port, stopped by PID at exit).
//
//   BM_Getaddrinfo/<family>/threads:<t>   getaddrinfo(name, AF_INET or AF_UNSPEC)
//   BM_DiscoListA/<family>/threads:<t>    Registry::List through dns://?record=a
//   BM_DiscoListSrv/threads:<t>           Registry::List through dns:// SRV: 3
//                                         targets, addresses from the additional
//                                         section (what a headless Service gives)
//
// family 4: A only; family 0: A and AAAA (getaddrinfo's AF_UNSPEC, dns://'s
// family=any), both queries sent at once by either. Every List and every
// getaddrinfo asks the server (neither caches; no nscd). getaddrinfo is
// pointed at dnsmasq's port through the calling thread's `_res` (glibc uses
// a program's changes to it), so it never leaves loopback; every answer is
// checked to be dnsmasq's. Times are wall-clock (UseRealTime): List waits on
// the c-ares thread, so its CPU time would say nothing. With threads:1 the
// time is one resolution's latency; items_per_second is the throughput of
// all threads together.
//
// Figures and the command: docs/benchmarks.md ("DNS: resolve latency").
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netdb.h>
#include <resolv.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "disco/registry.h"
#include "fixture/dnsmasq_server.h"

namespace {

using disco::testing::DnsmasqServer;

const char* const kName = "db.default.svc.cluster.local.";
const char* const kAddress = "127.0.3.1";

DnsmasqServer* g_dns = nullptr;

// The calling thread's resolver state, pointed at dnsmasq alone.
void PointGlibcAtDnsmasq() {
  res_init();
  _res.nscount = 1;
  _res.nsaddr_list[0].sin_family = AF_INET;
  _res.nsaddr_list[0].sin_port = htons(g_dns->port());
  inet_pton(AF_INET, "127.0.0.1", &_res.nsaddr_list[0].sin_addr);
  _res.retrans = 1;
}

void BM_Getaddrinfo(benchmark::State& state) {
  PointGlibcAtDnsmasq();
  addrinfo hints{};
  hints.ai_family = state.range(0) == 4 ? AF_INET : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  for (auto _ : state) {
    addrinfo* result = nullptr;
    int rc = getaddrinfo(kName, "5432", &hints, &result);
    if (rc != 0) {
      state.SkipWithError(gai_strerror(rc));
      return;
    }
    bool ours = false;  // dnsmasq's A record among the answers (AAAA may sort first)
    for (const addrinfo* at = result; at; at = at->ai_next) {
      char text[INET6_ADDRSTRLEN] = {};
      if (at->ai_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(at->ai_addr)->sin_addr, text, sizeof text);
      ours = ours || std::string(text) == kAddress;
    }
    freeaddrinfo(result);
    if (!ours) {
      state.SkipWithError("getaddrinfo's answer is not dnsmasq's");
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

std::unique_ptr<disco::Registry> Open(const std::string& params) {
  auto registry = disco::MakeRegistry("dns://" + g_dns->address() + "?search=&" + params);
  if (!registry) {
    std::fprintf(stderr, "%s\n", registry.error().ToString().c_str());
    std::exit(1);
  }
  return std::move(*registry);
}

// One List per iteration; `want` instances or the run is an error.
void RunList(benchmark::State& state, disco::Registry& registry, const char* service,
             std::size_t want) {
  for (auto _ : state) {
    auto list = registry.List(service);
    if (!list || list->size() != want) {
      state.SkipWithError(list ? "wrong number of instances" : list.error().message.c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

std::unique_ptr<disco::Registry> g_a4, g_any, g_srv;  // shared by the threads, as in a service

void BM_DiscoListA(benchmark::State& state) {
  if (state.range(0) == 4)
    RunList(state, *g_a4, "db", 1);
  else
    RunList(state, *g_any, "db", 2);
}

void BM_DiscoListSrv(benchmark::State& state) { RunList(state, *g_srv, "web", 3); }

BENCHMARK(BM_Getaddrinfo)->ArgName("family")->Arg(4)->Arg(0)->Threads(1)->Threads(4)->UseRealTime();
BENCHMARK(BM_DiscoListA)->ArgName("family")->Arg(4)->Arg(0)->Threads(1)->Threads(4)->UseRealTime();
BENCHMARK(BM_DiscoListSrv)->Threads(1)->Threads(4)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  DnsmasqServer dns(30);
  const std::string srv = "_http._tcp.web.default.svc.cluster.local";
  std::string records = disco::testing::HostRecord("db.default.svc.cluster.local", kAddress) +
                        disco::testing::HostRecord("db.default.svc.cluster.local", "fd00::31");
  std::string hosts;
  for (int i = 0; i < 3; ++i) {
    const std::string pod = "web-" + std::to_string(i) + ".web.default.svc.cluster.local";
    records += disco::testing::SrvHost(srv, pod, 8080, 10, 10);
    hosts += "127.0.4." + std::to_string(i + 1) + " " + pod + "\n";
  }
  dns.SetRecords(records);
  dns.SetHosts(hosts);
  dns.Start();
  g_dns = &dns;
  g_a4 = Open("name={service}.default.svc.cluster.local.&record=a&port=5432&family=4");
  g_any = Open("name={service}.default.svc.cluster.local.&record=a&port=5432");
  g_srv = Open("name=_http._tcp.{service}.default.svc.cluster.local.");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_srv.reset();
  g_any.reset();
  g_a4.reset();
  return 0;
}
