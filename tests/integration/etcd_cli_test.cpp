// The `disco` CLI against etcd: what scripts and operators rely on.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include "etcd_test_util.h"

namespace disco::testing {
namespace {

std::vector<std::string> Cli(const std::string& url, std::vector<std::string> args) {
  std::vector<std::string> argv = {DISCO_CLI_PATH, "--registry", url};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::size_t CountLines(const std::string& text) {
  std::size_t lines = 0;
  for (char c : text) lines += c == '\n';
  return lines;
}

std::size_t CountOccurrences(const std::string& text, const std::string& what) {
  std::size_t count = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

TEST(EtcdCliTest, CommandsAgainstADeadPortFailFastWithOneLineNamingTheUrl) {
  TempDir dir;
  const std::string url = "etcd://127.0.0.1:" + std::to_string(FreePort());
  int n = 0;
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"list", "svc"},
           {"list"},
           {"register", "svc", "--id", "a", "--address", "127.0.0.1", "--port", "9000"},
           {"deregister", "svc", "--id", "a"},
           {"watch", "svc"}}) {
    auto log = dir.Sub("cli-" + std::to_string(n++) + ".log");
    auto start = SteadyClock::now();
    Process cli(Cli(url, args), log);
    int status = cli.Wait(5s);
    ASSERT_NE(status, -1) << args[0] << " did not exit within 5 s";
    EXPECT_LE(MillisSince(start), 4000) << args[0];
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_NE(WEXITSTATUS(status), 0) << args[0];
    auto output = cli.ReadLog();
    EXPECT_EQ(CountLines(output), 1u) << args[0] << ": " << output;
    EXPECT_NE(output.find(url), std::string::npos) << args[0] << ": " << output;
  }
}

TEST(EtcdCliTest, RegisterKeepsAliveAndDeregistersOnSigterm) {
  EtcdServer etcd;
  TempDir dir;
  Process registrant(
      Cli(etcd.url(), {"register", "svc", "--id", "a", "--address", "127.0.0.1", "--port", "9000",
                       "--ttl", "2", "--tag", "blue", "--meta", "k=v", "--weight", "3"}),
      dir.Sub("register.log"));
  ASSERT_TRUE(WaitFor([&] { return etcd.Get("services/svc/a").has_value(); }, 5s))
      << registrant.ReadLog();
  auto registry = OpenEtcd(etcd.url());
  auto list = registry->List("svc");
  ASSERT_TRUE(list && list->size() == 1);
  EXPECT_EQ(list->at(0).instance.tags, std::vector<std::string>{"blue"});
  EXPECT_EQ(list->at(0).instance.metadata.at("k"), "v");
  EXPECT_EQ(list->at(0).instance.weight, 3u);
  std::this_thread::sleep_for(3s);  // past the TTL: kept alive
  EXPECT_TRUE(etcd.Get("services/svc/a").has_value());

  ASSERT_TRUE(registrant.Signal(SIGTERM));
  int status = registrant.Wait(5s);
  ASSERT_NE(status, -1);
  ASSERT_TRUE(WIFEXITED(status)) << registrant.ReadLog();
  EXPECT_EQ(WEXITSTATUS(status), 0) << registrant.ReadLog();
  EXPECT_FALSE(etcd.Get("services/svc/a").has_value()) << "removed before exit, not by TTL";
  EXPECT_NE(registrant.ReadLog().find("deregistered"), std::string::npos);
}

TEST(EtcdCliTest, WatchPrintsChangesAndListPrintsInstances) {
  EtcdServer etcd;
  TempDir dir;
  Process watcher(Cli(etcd.url(), {"watch", "svc"}), dir.Sub("watch.log"));
  ASSERT_TRUE(WaitFor([&] { return watcher.ReadLog().find("snapshot") != std::string::npos; }, 5s))
      << watcher.ReadLog();
  auto registry = OpenEtcd(etcd.url());
  auto registration = registry->Register(Instance("svc", "a", 9000), Ttl(3));
  ASSERT_TRUE(registration);
  ASSERT_TRUE(WaitFor(
      [&] { return watcher.ReadLog().find("+ a  127.0.0.1:9000") != std::string::npos; }, 5s))
      << watcher.ReadLog();

  Process lister(Cli(etcd.url(), {"list", "svc"}), dir.Sub("list.log"));
  ASSERT_EQ(lister.Wait(5s), 0) << lister.ReadLog();
  EXPECT_NE(lister.ReadLog().find("a  127.0.0.1:9000"), std::string::npos) << lister.ReadLog();

  ASSERT_TRUE((*registration)->Deregister());
  ASSERT_TRUE(WaitFor(
      [&] { return watcher.ReadLog().find("- a  127.0.0.1:9000") != std::string::npos; }, 5s))
      << watcher.ReadLog();
  watcher.Signal(SIGTERM);
  EXPECT_EQ(watcher.Wait(5s), 0);
}

TEST(EtcdCliTest, MalformedValueIsWarnedAboutOncePerRevision) {
  EtcdServer etcd;
  TempDir dir;
  etcd.Put("services/svc/garbage", "not json");
  etcd.Put("services/svc/ok", R"({"Op":0,"Addr":"127.0.0.1:9000","Metadata":null})");
  Process watcher(Cli(etcd.url(), {"watch", "svc"}), dir.Sub("watch.log"));
  ASSERT_TRUE(WaitFor([&] { return watcher.ReadLog().find("= ok") != std::string::npos; }, 5s))
      << watcher.ReadLog();
  // Restarting etcd makes the watcher list (and see the garbage) again.
  etcd.Stop();
  etcd.Start();
  etcd.Put("services/svc/ok2", R"({"Op":0,"Addr":"127.0.0.1:9001","Metadata":null})");
  ASSERT_TRUE(WaitFor([&] { return watcher.ReadLog().find("+ ok2") != std::string::npos; }, 8s))
      << watcher.ReadLog();
  auto output = watcher.ReadLog();
  EXPECT_EQ(CountOccurrences(output, "services/svc/garbage"), 1u) << output;
  EXPECT_NE(output.find("not JSON"), std::string::npos) << output;
  // A new revision of the bad value is a new warning.
  etcd.Put("services/svc/garbage", "still not json");
  ASSERT_TRUE(
      WaitFor([&] { return CountOccurrences(watcher.ReadLog(), "services/svc/garbage") == 2; }, 5s))
      << watcher.ReadLog();
  watcher.Signal(SIGTERM);
  EXPECT_EQ(watcher.Wait(5s), 0);
}

}  // namespace
}  // namespace disco::testing
