// Resolver memory per watched instance at 10,000 instances, on etcd (issue 2).
//
// Starts its own etcd, writes N instances under one service (raw puts of the
// value disco writes, 128 per transaction), and measures the live heap of the
// process (glibc mallinfo2: in-use arena bytes + mmapped chunks) and its RSS
// around a Resolver of that service:
//   A. resolver started on the empty service, then the N instances arrive
//      through its watch (in batches of 128);
//   B. a second resolver started when the N instances already exist (they
//      arrive in the first Range).
// Each figure is everything that stays allocated for the resolver: the
// backend's watch cache (one ServiceInstance per instance), the resolver's
// snapshot (Endpoint + address + shared EndpointStats) and the picker. For
// reference it also measures a plain std::vector<ServiceInstance> of the
// same instances.
//
//   disco_resolver_memory_bench [--instances N]
#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "disco/registry.h"
#include "disco/resolver.h"
#include "fixture/etcd_server.h"

namespace {

long long LiveHeapBytes() {
  malloc_trim(0);
  struct mallinfo2 info = mallinfo2();
  return static_cast<long long>(info.uordblks + info.hblkhd);
}

long long RssBytes() {
  std::ifstream statm("/proc/self/statm");
  long long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

void Settle() { std::this_thread::sleep_for(std::chrono::milliseconds(500)); }

bool WaitForSize(disco::Resolver& resolver, std::size_t n) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (resolver.snapshot()->endpoints.size() == n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

struct Delta {
  long long heap;
  long long rss;
};

void Print(const char* what, Delta d, int n, bool with_rss = true) {
  std::printf("| %-58s | %8.1f | ", what, static_cast<double>(d.heap) / n);
  if (with_rss) {
    std::printf("%8.1f |\n", static_cast<double>(d.rss) / n);
  } else {
    std::printf("%8s |\n", "-");
  }
}

}  // namespace

int main(int argc, char** argv) {
  int n = 10000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--instances") == 0) n = std::atoi(argv[i + 1]);
  }
  disco::testing::EtcdServer etcd;
  auto registry = disco::MakeRegistry(etcd.url());
  if (!registry) return 1;

  // What disco's Register writes for a plain instance (id like "mem-00042",
  // distinct 10.x.y.z:port addresses).
  std::vector<std::pair<std::string, std::string>> kvs;
  std::vector<disco::ServiceInstance> reference;
  for (int i = 0; i < n; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "mem-%05d", i);
    std::string host = "10." + std::to_string(i / 65536 % 256) + "." +
                       std::to_string(i / 256 % 256) + "." + std::to_string(i % 256);
    std::string addr = host + ":8080";
    kvs.emplace_back(
        std::string("services/mem/") + id,
        R"({"Op":0,"Addr":")" + addr + R"(","Metadata":{"id":")" + id + R"(","weight":1}})");
    reference.push_back({"mem", id, host, 8080, {}, {}, 1, {}});
  }

  // Reference: the instances themselves in a vector.
  auto before_vector = LiveHeapBytes();
  auto copy = std::make_unique<std::vector<disco::ServiceInstance>>(reference);
  Delta vector_delta{LiveHeapBytes() - before_vector, 0};
  copy.reset();

  // A. Resolver first, instances arrive through the watch.
  auto resolver_a = disco::Resolver::Make(**registry, "mem");
  if (!resolver_a || !(*resolver_a)->WaitReady(std::chrono::seconds(10))) return 1;
  Settle();
  auto heap_a0 = LiveHeapBytes();
  auto rss_a0 = RssBytes();
  etcd.PutMany(kvs);
  if (!WaitForSize(**resolver_a, static_cast<std::size_t>(n))) return 1;
  Settle();
  Delta watched{LiveHeapBytes() - heap_a0, RssBytes() - rss_a0};

  // B. A second resolver on the existing instances (first Range).
  auto heap_b0 = LiveHeapBytes();
  auto rss_b0 = RssBytes();
  auto resolver_b = disco::Resolver::Make(**registry, "mem");
  if (!resolver_b || !WaitForSize(**resolver_b, static_cast<std::size_t>(n))) return 1;
  Settle();
  Delta listed{LiveHeapBytes() - heap_b0, RssBytes() - rss_b0};

  std::printf(
      "%d instances; bytes per instance (live heap via glibc mallinfo2 after malloc_trim; "
      "RSS from /proc/self/statm)\n\n",
      n);
  std::printf("| %-58s | %8s | %8s |\n", "measure", "heap B", "RSS B");
  std::printf("|%s|---------:|---------:|\n", std::string(60, '-').c_str());
  Print("A. resolver watching; instances arrived through the watch", watched, n);
  Print("B. second resolver; instances arrived in its first Range", listed, n);
  Print("reference: std::vector<ServiceInstance> of the same", vector_delta, n, false);
  std::printf("\nsizeof(ServiceInstance)=%zu sizeof(Endpoint)=%zu sizeof(EndpointStats)=%zu\n",
              sizeof(disco::ServiceInstance), sizeof(disco::Endpoint),
              sizeof(disco::EndpointStats));
  return 0;
}
