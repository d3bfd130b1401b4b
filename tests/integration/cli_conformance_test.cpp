// The `disco` CLI against every backend another process can reach: each
// command run as a real process, as scripts and operators run it.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <thread>

#include "fixture/cli.h"
#include "fixture/registry_backend.h"
#include "fixture/util.h"

namespace disco::testing {
namespace {

using namespace std::chrono_literals;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::size_t Lines(const std::string& text) {
  auto lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
  return lines + (!text.empty() && text.back() != '\n' ? 1 : 0);
}

std::vector<std::string> RemoteBackends() {
  std::vector<std::string> names;
  // memory:// is the one backend another process cannot reach (and making a
  // backend here, at test registration time, would start nothing but cost a
  // temp dir and ports per process).
  for (const auto& name : RegistryBackendNames()) {
    if (name != "memory") names.push_back(name);
  }
  return names;
}

class CliConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    backend_ = MakeRegistryBackend(GetParam());
    backend_->Start();
  }

  CliResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"--registry", backend_->url()});
    return RunCli(args);
  }

  std::unique_ptr<RegistryBackend> backend_;
  TempDir dir_{"disco-cli-conf"};
};

TEST_P(CliConformanceTest, EveryCommandWorks) {
  const std::string ttl =
      std::to_string(std::max<std::chrono::seconds>(3s, backend_->MinTtl()).count());
  Process registrant = StartCli({"--registry", backend_->url(), "register", "cli-svc", "--id",
                                 "c-1", "--address", "127.0.0.1", "--port", "7001", "--ttl", ttl,
                                 "--tag", "blue", "--meta", "k=v", "--weight", "3"},
                                dir_.Sub("register.log"));
  Process watcher =
      StartCli({"--registry", backend_->url(), "watch", "cli-svc"}, dir_.Sub("watch.log"));
  ASSERT_TRUE(
      WaitFor([&] { return Contains(registrant.ReadLog(), "registered cli-svc/c-1"); }, 10s))
      << registrant.ReadLog();

  auto list = Cli({"list", "cli-svc"});
  EXPECT_EQ(list.exit_code, 0) << list.output;
  EXPECT_TRUE(Contains(list.output, "c-1  127.0.0.1:7001")) << list.output;
  EXPECT_TRUE(Contains(list.output, "weight=3")) << list.output;
  EXPECT_TRUE(Contains(list.output, "tags=blue")) << list.output;
  EXPECT_TRUE(Contains(list.output, "k=v")) << list.output;

  auto all = Cli({"list", "cli-svc", "--all"});
  EXPECT_EQ(all.exit_code, 0) << all.output;
  EXPECT_TRUE(Contains(all.output, "[passing]")) << all.output;

  auto services = Cli({"list"});
  EXPECT_EQ(services.exit_code, 0) << services.output;
  EXPECT_TRUE(Contains(services.output, "cli-svc")) << services.output;

  auto pick = Cli({"pick", "cli-svc", "--count", "2"});
  EXPECT_EQ(pick.exit_code, 0) << pick.output;
  EXPECT_TRUE(Contains(pick.output, "c-1  127.0.0.1:7001")) << pick.output;

  EXPECT_TRUE(WaitFor([&] { return Contains(watcher.ReadLog(), "c-1"); }, 10s))
      << watcher.ReadLog();

  auto deregister = Cli({"deregister", "cli-svc", "--id", "c-1"});
  EXPECT_EQ(deregister.exit_code, 0) << deregister.output;
  EXPECT_TRUE(Contains(deregister.output, "deregistered cli-svc/c-1")) << deregister.output;
  EXPECT_TRUE(WaitFor([&] { return Contains(watcher.ReadLog(), "- c-1"); }, 10s))
      << watcher.ReadLog();

  // SIGTERM: the registrant deregisters and exits cleanly.
  ASSERT_TRUE(registrant.Signal(SIGTERM));
  EXPECT_EQ(registrant.Wait(10s), 0) << registrant.ReadLog();
  EXPECT_TRUE(Contains(registrant.ReadLog(), "deregistered cli-svc/c-1")) << registrant.ReadLog();
  auto empty = Cli({"list", "cli-svc"});
  EXPECT_EQ(empty.exit_code, 0);
  EXPECT_TRUE(Contains(empty.output, "no healthy instances of cli-svc")) << empty.output;

  ASSERT_TRUE(watcher.Signal(SIGTERM));
  EXPECT_EQ(watcher.Wait(10s), 0) << watcher.ReadLog();
}

TEST_P(CliConformanceTest, UnreachableRegistryIsOneLineNamingTheUrl) {
  const std::string url = backend_->UnreachableUrl();
  ASSERT_FALSE(url.empty());
  const std::vector<std::vector<std::string>> commands = {
      {"list"},
      {"list", "svc"},
      {"list", "svc", "--all"},
      {"watch", "svc"},
      {"pick", "svc"},
      {"deregister", "svc", "--id", "x"},
      {"register", "svc", "--id", "x", "--address", "127.0.0.1", "--port", "7001"},
  };
  for (auto args : commands) {
    std::string shown = args.front() + (args.size() > 1 ? " " + args[1] : "");
    args.insert(args.begin(), {"--registry", url});
    auto result = RunCli(args, 10s);
    EXPECT_NE(result.exit_code, 0) << shown << ": " << result.output;
    EXPECT_NE(result.exit_code, -1) << shown << " did not exit by itself";
    EXPECT_LT(result.elapsed, 5s) << shown;
    EXPECT_EQ(Lines(result.output), 1u) << shown << ": " << result.output;
    // The URL as given (its host:port), so the operator sees what was tried.
    EXPECT_TRUE(Contains(result.output, url.substr(url.find("://") + 3)))
        << shown << ": " << result.output;
  }
}

std::string BackendName(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

INSTANTIATE_TEST_SUITE_P(Backends, CliConformanceTest, ::testing::ValuesIn(RemoteBackends()),
                         BackendName);

}  // namespace
}  // namespace disco::testing
