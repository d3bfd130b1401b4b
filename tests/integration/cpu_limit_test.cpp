// A server under a real CPU limit (src/http/cpu_limit.h): the test moves its
// own process into a cgroup it makes (root and a writable cgroup file system
// with the CPU controller only; otherwise it skips, saying why), and checks
// that the limit is found while the process runs and that the server's busy
// turns then read the CPU clock, and no more often than the interval allows.
// Without a limit they never do.
//
// The cgroup: on cgroup v1, a child of the test's own (so a runner that
// stops the test's cgroup still finds it); on v2, a child of the root, only
// when the root already hands the CPU controller down (a child of a cgroup
// with processes in it cannot get one). The process goes back and the
// cgroup is removed at the end; ones left by a killed run are removed by the
// next.
//
// What the reads are for (a throttle that ends on time) is measured, not
// tested: docs/benchmarks.md, "A throttled gateway's tail: the scheduler tick".
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "disco/http/server.h"
#include "http/cpu_limit.h"

namespace disco::http {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr std::string_view kPrefix = "disco-cpu-limit-test-";

bool WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

bool HasWord(const std::string& text, std::string_view word) {
  std::istringstream words(text);
  for (std::string w; words >> w;)
    if (w == word) return true;
  return false;
}

// This process's cgroup path in the hierarchy whose /proc/self/cgroup line
// `matches` (hierarchy id, controllers).
template <class Matches>
std::string OwnPath(Matches matches) {
  std::istringstream lines(ReadFile("/proc/self/cgroup"));
  for (std::string line; std::getline(lines, line);) {
    const auto first = line.find(':');
    const auto second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    if (matches(line.substr(0, first), line.substr(first + 1, second - first - 1)))
      return line.substr(second + 1);
  }
  return {};
}

// Test cgroups under `parent` whose process is gone (a run killed midway).
void RemoveLeftovers(const fs::path& parent) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0) continue;
    const pid_t pid = static_cast<pid_t>(std::atoi(name.c_str() + kPrefix.size()));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) fs::remove(entry.path(), ec);
  }
}

// A cgroup that may use `percent` % of a core, with this process in it.
class LimitedCgroup {
 public:
  explicit LimitedCgroup(int percent) {
    if (::geteuid() != 0) {
      why_not_ = "needs root to make a cgroup";
      return;
    }
    const std::string name = std::string(kPrefix) + std::to_string(::getpid());
    std::error_code ec;
    for (const char* v1 : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
      if (!fs::exists(fs::path(v1) / "cpu.cfs_quota_us", ec)) continue;
      mount_ = v1;
      home_ = OwnPath([](const std::string&, const std::string& controllers) {
        return ("," + controllers + ",").find(",cpu,") != std::string::npos;
      });
      const fs::path parent = mount_.string() + home_;
      RemoveLeftovers(parent);
      if (!Make(parent / name) || !WriteFile(dir_ / "cpu.cfs_period_us", "10000") ||
          !WriteFile(dir_ / "cpu.cfs_quota_us", std::to_string(percent * 100))) {
        why_not_ = "cannot make a cgroup with a CPU quota under " + parent.string();
        return;
      }
      Enter();
      return;
    }
    const fs::path v2 = "/sys/fs/cgroup";
    if (!HasWord(ReadFile(v2 / "cgroup.subtree_control"), "cpu")) {
      why_not_ = "no cgroup v1 cpu controller, and cgroup v2's root does not hand down cpu";
      return;
    }
    mount_ = v2;
    home_ = OwnPath([](const std::string& id, const std::string& controllers) {
      return id == "0" && controllers.empty();
    });
    RemoveLeftovers(v2);
    if (!Make(v2 / name) ||
        !WriteFile(dir_ / "cpu.max", std::to_string(percent * 100) + " 10000")) {
      why_not_ = "cannot make a cgroup with cpu.max under " + v2.string();
      return;
    }
    Enter();
  }
  ~LimitedCgroup() {
    if (entered_) WriteFile(mount_.string() + home_ + "/cgroup.procs", std::to_string(::getpid()));
    if (!dir_.empty()) {
      std::error_code ignored;
      fs::remove(dir_, ignored);
    }
  }
  const std::string& why_not() const { return why_not_; }

 private:
  bool Make(const fs::path& dir) {
    std::error_code ec;  // a read-only cgroup file system (a container) says so here
    if (!fs::create_directory(dir, ec) || ec) return false;
    dir_ = dir;
    return true;
  }
  void Enter() {
    entered_ = WriteFile(dir_ / "cgroup.procs", std::to_string(::getpid()));
    if (!entered_) why_not_ = "cannot move this process into " + dir_.string();
  }

  fs::path mount_;
  std::string home_;  // the cgroup this process came from
  fs::path dir_;
  bool entered_ = false;
  std::string why_not_;
};

// Until the limit's reader has read the files from start to end after this
// call (a read under way when it was called counts one).
void AwaitLimitRead() {
  const auto before = detail::CpuLimitCounts().limit_reads;
  detail::RereadCpuLimitSoon();
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (detail::CpuLimitCounts().limit_reads < before + 2 &&
         std::chrono::steady_clock::now() < until) {
    if (detail::CpuLimitCounts().limit_reads == before + 1) detail::RereadCpuLimitSoon();
    std::this_thread::sleep_for(1ms);
  }
}

// One request at a time on one connection until `enough` or `deadline`.
template <class Enough>
void Serve(std::uint16_t port, Enough enough, std::chrono::steady_clock::duration deadline) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  const std::string request = "GET /hello HTTP/1.1\r\nHost: test\r\n\r\n";
  const auto until = std::chrono::steady_clock::now() + deadline;
  char buffer[4096];
  while (!enough() && std::chrono::steady_clock::now() < until) {
    ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
    std::string in;
    while (in.find("hello") == std::string::npos) {
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      ASSERT_GT(n, 0);
      in.append(buffer, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
}

class CpuLimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Router router;
    router.Add("GET", "/hello", [](Request&) -> Awaitable<Response> {
      co_return Response::Text(200, "hello");
    });
    ServerOptions options;
    options.threads = 1;
    options.access_log = false;
    server_ = std::make_unique<Server>(std::move(router), options);
    ASSERT_TRUE(server_->Start().has_value());
  }
  std::unique_ptr<Server> server_;
};

TEST_F(CpuLimitTest, AServerUnderALimitReadsItsCpuClockSpaced) {
  // The reader runs and has seen this process as it is (no limit, unless
  // these tests run under one) before the process moves.
  AwaitLimitRead();
  LimitedCgroup cgroup(30);
  if (!cgroup.why_not().empty()) GTEST_SKIP() << cgroup.why_not();
  const auto limit = detail::ReadCpuLimit();
  ASSERT_TRUE(limit.own_cores.has_value()) << "the cgroup's limit is not found";
  EXPECT_DOUBLE_EQ(*limit.own_cores, 0.3);
  ASSERT_TRUE(CpuLimitCores().has_value());
  EXPECT_LE(*CpuLimitCores(), 0.3 + 1e-9);
  EXPECT_EQ(UsableCores(), 1u);

  // The process moved while it ran: the reader sees the limit at its next
  // look (within a second), then the server's turns read the clock.
  const auto before = detail::CpuLimitCounts();
  Serve(server_->port(), [&] { return detail::CpuLimitCounts().clock_reads > before.clock_reads; },
        20s);
  const auto seen = detail::CpuLimitCounts();
  ASSERT_GT(seen.clock_reads, before.clock_reads) << "busy turns under a limit never read";

  // A thread reads at most once per interval, however often it passes a
  // checkpoint (the server's thread is idle now, its last read made).
  std::this_thread::sleep_for(2ms);
  const auto idle = detail::CpuLimitCounts();
  const auto start = std::chrono::steady_clock::now();
  std::uint64_t passed = 0;
  while (std::chrono::steady_clock::now() - start < 30ms) {
    detail::CpuLimitCheckpoint();
    ++passed;
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  const auto after = detail::CpuLimitCounts();
  EXPECT_GE(after.clock_reads, idle.clock_reads + 1);
  EXPECT_LE(after.clock_reads - idle.clock_reads,
            static_cast<std::uint64_t>(elapsed / detail::kCpuClockInterval) + 1)
      << passed << " checkpoints in " << elapsed / 1us << " µs";
}

TEST_F(CpuLimitTest, WithoutALimitNoClockReads) {
  const auto limit = detail::ReadCpuLimit();
  if (limit.own_cores && *limit.own_cores < detail::AffinityCpus())
    GTEST_SKIP() << "these tests run under a CPU limit of " << *limit.own_cores << " cores";
  AwaitLimitRead();
  const auto before = detail::CpuLimitCounts();
  int served = 0;
  Serve(server_->port(), [&] { return ++served > 300; }, 20s);
  EXPECT_EQ(detail::CpuLimitCounts().clock_reads, before.clock_reads);
}

}  // namespace
}  // namespace disco::http
