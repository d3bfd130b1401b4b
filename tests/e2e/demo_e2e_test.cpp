// End to end: the README's first command, scripts/demo.sh, run for real
// against etcd and against Consul, with this build's binaries (--no-install
// --no-build, DISCO_DEMO_BUILD_DIR), in a temp run dir and on free ports, so
// it never touches the user's .run/demo or anything listening elsewhere.
//
// Checks the client's transcript (every step succeeded, both instances of
// each service served calls, no failed call around the kill -9 of
// user-service-2, which the registry then dropped), that everything the demo
// recorded runs, and that `demo.sh stop` leaves none of it running. On etcd
// the demo is also started a second time over the first, which must stop the
// first run's processes. `demo.sh --tls` runs the whole system over TLS on
// etcd with client certificates and etcd's access control.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "fixture/consul_agent.h"
#include "fixture/process.h"
#include "fixture/util.h"

namespace disco::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

// "PID command-name [start-time]", as scripts/demo.sh writes them.
struct Recorded {
  std::string name;
  pid_t pid = 0;
  std::string comm;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<Recorded> RecordedProcesses(const std::string& run) {
  std::vector<Recorded> out;
  for (const auto& entry : std::filesystem::directory_iterator(run)) {
    if (entry.path().extension() != ".pid") continue;
    Recorded r;
    r.name = entry.path().stem();
    std::ifstream in(entry.path());
    in >> r.pid >> r.comm;
    out.push_back(r);
  }
  return out;
}

// Whether `pid` still runs the recorded command (a reused PID does not count).
// A zombie does not: it has exited, and holds no port or file; it stays only
// until its parent (init, for the demo's processes) reaps it.
bool Alive(pid_t pid, const std::string& comm) {
  const std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  const auto paren = stat.rfind(')');
  if (paren == std::string::npos || stat.compare(paren, 3, ") Z") == 0) return false;
  std::string actual = ReadFile("/proc/" + std::to_string(pid) + "/comm");
  while (!actual.empty() && actual.back() == '\n') actual.pop_back();
  return !actual.empty() && actual == comm;
}

class DemoScript {
 public:
  explicit DemoScript(std::string registry) : registry_(std::move(registry)) {
    env_ = {"DISCO_DEMO_RUN_DIR=" + run(),
            std::string("DISCO_DEMO_BUILD_DIR=") + DISCO_BUILD_DIR,
            "DISCO_DEMO_TTL=3",
            "DISCO_DEMO_PORTS=",
            "DISCO_DEMO_REGISTRY=",
            "DISCO_REGISTRY=",
            "DISCO_JWT_SECRET="};
    for (const char* name : {"DISCO_DEMO_ETCD_PORT", "DISCO_DEMO_ETCD_PEER_PORT",
                             "DISCO_DEMO_CONSUL_PORT", "DISCO_DEMO_CONSUL_SERVER_PORT",
                             "DISCO_DEMO_CONSUL_SERF_PORT", "DISCO_DEMO_GATEWAY_PORT"})
      env_.push_back(std::string(name) + "=" + std::to_string(FreePort()));
    env_.push_back("DISCO_DEMO_USER_PORTS=" + std::to_string(FreePort()) + "," +
                   std::to_string(FreePort()));
    env_.push_back("DISCO_DEMO_ORDER_PORTS=" + std::to_string(FreePort()) + "," +
                   std::to_string(FreePort()));
  }
  // Whatever happens in the test, nothing the demo started outlives it.
  ~DemoScript() {
    if (std::filesystem::exists(run())) Run({"stop"}, 60s);
  }

  std::string run() const { return dir_.Sub("run"); }

  // Runs scripts/demo.sh ARGS...; returns {wait status, output}.
  std::pair<int, std::string> Run(std::vector<std::string> args,
                                  std::chrono::milliseconds timeout) {
    std::vector<std::string> argv = {"bash", std::string(DISCO_SOURCE_DIR) + "/scripts/demo.sh"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string log = dir_.Sub("demo-" + std::to_string(++runs_) + ".log");
    Process script(argv, log, env_);
    int status = script.Wait(timeout);
    if (status == -1) script.Kill();
    return {status, ReadFile(log)};
  }

  std::pair<int, std::string> Start(std::vector<std::string> more = {}) {
    std::vector<std::string> args = {"start", "--registry", registry_, "--no-install",
                                     "--no-build"};
    args.insert(args.end(), more.begin(), more.end());
    return Run(args, 240s);
  }

 private:
  std::string registry_;
  TempDir dir_{"disco-e2e"};
  std::vector<std::string> env_;
  int runs_ = 0;
};

bool Succeeded(int status) { return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

class DemoE2eTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DemoE2eTest, RunsTheDemoFailsOverAndStopsEverything) {
  const std::string registry = GetParam();
  if (registry == "consul") {
    ASSERT_TRUE(ConsulAgent::Available())
        << "no Consul binary at " << ConsulAgent::BinaryPath() << ": run scripts/install-consul.sh";
  }
  DemoScript demo(registry);
  auto [status, output] = demo.Start();
  std::printf("%s", output.c_str());
  ASSERT_TRUE(Succeeded(status)) << "scripts/demo.sh failed (status " << status << ")";
  const std::string run = demo.run();

  // The transcript: every step succeeded; both instances of each service served.
  std::vector<json> steps;
  json summary, loop;
  {
    std::ifstream in(run + "/client.json");
    std::string line;
    while (std::getline(in, line)) {
      auto j = json::parse(line, nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
      if (j["type"] == "step") steps.push_back(j);
      if (j["type"] == "summary") summary = j;
      if (j["type"] == "loop") loop = j;
    }
  }
  ASSERT_TRUE(summary.is_object()) << "no summary in client.json";
  ASSERT_TRUE(loop.is_object()) << "the client never reached its loop";
  EXPECT_EQ(summary["via"], "gateway");
  EXPECT_EQ(summary["failed"], 0) << summary.dump();
  EXPECT_EQ(summary["steps"].get<std::size_t>(), steps.size());
  EXPECT_GT(summary["rounds"].get<int>(), 10) << summary.dump();
  std::set<std::string> walkthrough;
  for (const auto& step : steps) {
    EXPECT_TRUE(step["ok"].get<bool>()) << step.dump();
    if (step["round"] == 0) walkthrough.insert(step["step"].get<std::string>());
  }
  EXPECT_EQ(walkthrough, (std::set<std::string>{"register", "login", "me", "create_order",
                                                "list_orders", "get_order"}));
  for (const char* service : {"user-service", "order-service"}) {
    auto served = summary["services"][service];
    EXPECT_TRUE(served.contains(std::string(service) + "-1") &&
                served.contains(std::string(service) + "-2"))
        << service << " was not served by both instances: " << summary.dump();
  }

  // The failover scene: user-service-2 killed mid-loop, calls went on without
  // a failure, the registry dropped it.
  auto failover = json::parse(ReadFile(run + "/failover.json"), nullptr, false);
  ASSERT_TRUE(failover.is_object()) << "no failover.json";
  EXPECT_EQ(failover["killed"], "user-service-2");
  ASSERT_TRUE(failover["dropped_unix_ms"].is_number()) << failover.dump();
  std::int64_t killed_ms = failover["killed_unix_ms"];
  int after_kill = 0, user_calls_after_kill = 0;
  for (const auto& step : steps) {
    if (step["unix_ms"].get<std::int64_t>() < killed_ms + 200) continue;
    ++after_kill;
    if (step["service"] == "user-service") {
      ++user_calls_after_kill;
      EXPECT_EQ(step["served_by"], "user-service-1")
          << "a killed instance answered: " << step.dump();
    }
  }
  EXPECT_GE(after_kill, 30) << "too few calls after the kill to show anything";
  EXPECT_GE(user_calls_after_kill, 10);
  EXPECT_NE(output.find("kill -9 user-service-2"), std::string::npos);
  // The dashboard's address comes before the scene, so someone can watch it.
  auto dashboard = output.find("/dashboard (charts");
  EXPECT_NE(dashboard, std::string::npos) << output;
  EXPECT_LT(dashboard, output.find("kill -9 user-service-2 (pid")) << output;
  EXPECT_NE(output.find("the registry dropped user-service-2"), std::string::npos);

  // Everything recorded runs (user-service-2 started again after the scene).
  auto recorded = RecordedProcesses(run);
  std::set<std::string> names;
  for (const auto& r : recorded) {
    names.insert(r.name);
    EXPECT_TRUE(Alive(r.pid, r.comm)) << r.name << " (pid " << r.pid << ") is not running";
  }
  EXPECT_EQ(names, (std::set<std::string>{"registry", "user-service-1", "user-service-2",
                                          "order-service-1", "order-service-2", "gateway-1"}));
  std::vector<Recorded> all = recorded;
  all.push_back({"killed user-service-2", failover["pid"].get<pid_t>(), "user-service"});

  if (registry == "etcd") {
    // Running it again stops the first run, then starts afresh.
    auto [again, again_output] = demo.Start({"--no-failover"});
    ASSERT_TRUE(Succeeded(again)) << again_output;
    EXPECT_NE(again_output.find("stopping the previous demo run first"), std::string::npos)
        << again_output;
    for (const auto& r : recorded)
      EXPECT_FALSE(Alive(r.pid, r.comm)) << "the second run left " << r.name << " of the first";
    auto second = RecordedProcesses(run);
    EXPECT_EQ(second.size(), 6u);
    all.insert(all.end(), second.begin(), second.end());
  }

  auto [stopped, stop_output] = demo.Run({"stop"}, 60s);
  EXPECT_TRUE(Succeeded(stopped)) << stop_output;
  std::printf("%s", stop_output.c_str());
  for (const auto& r : all)
    EXPECT_FALSE(Alive(r.pid, r.comm)) << r.name << " (pid " << r.pid << ") still runs after stop";
  EXPECT_TRUE(RecordedProcesses(run).empty()) << "PID files left after stop";
  auto [state, status_output] = demo.Run({"status"}, 30s);
  EXPECT_TRUE(Succeeded(state));
  EXPECT_NE(status_output.find("nothing running"), std::string::npos) << status_output;
}

// The output of shell command `command` (stderr too) and its exit code.
std::pair<int, std::string> Capture(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, ""};
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// "key=value" lines of demo.env.
std::map<std::string, std::string> DemoEnv(const std::string& run) {
  std::map<std::string, std::string> out;
  std::istringstream in(ReadFile(run + "/demo.env"));
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

// scripts/demo.sh --tls: certificates made with openssl, etcd requiring
// client certificates with its access control on, mutual TLS between the
// services, the gateway on HTTPS, the client through it over TLS.
class DemoE2eTlsTest : public ::testing::TestWithParam<std::string> {};

// etcd: no certificate, no connection; a certificate without an etcd user
// may not write; a service's user may write its own keys only.
void ExpectEtcdAccessControl(const std::string& tls, const std::string& etcd) {
  const std::string etcdctl = "ETCDCTL_API=3 etcdctl --endpoints https://" + etcd +
                              " --cacert " + tls + "/ca.pem";
  const std::string with_cert = etcdctl + " --cert " + tls + "/client.pem --key " + tls +
                                "/client.key";
  EXPECT_NE(Capture(etcdctl + " --dial-timeout 2s get x").first, 0);
  auto [anon_put_rc, anon_put] = Capture(with_cert + " put services/user-service/fake x");
  EXPECT_NE(anon_put_rc, 0);
  EXPECT_NE(anon_put.find("permission denied"), std::string::npos) << anon_put;
  const std::string as_user = with_cert + " --user user-service:\"$(cat " + tls +
                              "/user-service.password)\"";
  auto [own_rc, own] = Capture(as_user + " put services/user-service/probe x");
  EXPECT_EQ(own_rc, 0) << own;
  Capture(as_user + " del services/user-service/probe");
  auto [other_rc, other] = Capture(as_user + " put services/order-service/fake x");
  EXPECT_NE(other_rc, 0);
  EXPECT_NE(other.find("permission denied"), std::string::npos) << other;
}

// Consul: no certificate, no connection; a certificate without a token may
// not register; a service's token may register its own service only.
void ExpectConsulAcls(const std::string& tls, const std::string& agent) {
  const std::string curl = "curl -s -m 5 -w ' %{http_code}' --cacert " + tls + "/ca.pem";
  const std::string with_cert = curl + " --cert " + tls + "/client.pem --key " + tls + "/client.key";
  const std::string url = " https://" + agent + "/v1/agent/service/";
  auto register_as = [&](const std::string& token, const std::string& service) {
    const std::string header =
        token.empty() ? "" : " -H \"X-Consul-Token: $(cat " + tls + "/" + token + ".token)\"";
    return Capture(with_cert + header + " -X PUT -d '{\"Name\":\"" + service +
                   "\",\"ID\":\"probe\"}'" + url + "register")
        .second;
  };
  EXPECT_NE(Capture(curl + url + "register").first, 0) << "Consul answered without a certificate";
  EXPECT_NE(register_as("", "user-service").find("403"), std::string::npos);
  EXPECT_NE(register_as("user-service", "user-service").find(" 200"), std::string::npos);
  Capture(with_cert + " -H \"X-Consul-Token: $(cat " + tls + "/user-service.token)\" -X PUT" +
          url + "deregister/probe");
  EXPECT_NE(register_as("user-service", "order-service").find("403"), std::string::npos);
  EXPECT_NE(register_as("viewer", "user-service").find("403"), std::string::npos);
}

TEST_P(DemoE2eTlsTest, RunsTheWholeDemoOverTlsWithTheRegistrysAccessControl) {
  DemoScript demo(GetParam());
  auto [status, output] = demo.Start({"--tls", "--no-failover"});
  std::printf("%s", output.c_str());
  ASSERT_TRUE(Succeeded(status)) << "scripts/demo.sh --tls failed (status " << status << ")";
  const std::string run = demo.run();
  const std::string tls = run + "/tls";

  json summary;
  {
    std::ifstream in(run + "/client.json");
    std::string line;
    while (std::getline(in, line)) {
      auto j = json::parse(line, nullptr, false);
      if (!j.is_discarded() && j["type"] == "summary") summary = j;
    }
  }
  ASSERT_TRUE(summary.is_object()) << "no summary in client.json";
  EXPECT_EQ(summary["failed"], 0) << summary.dump();
  EXPECT_GE(summary["steps"].get<int>(), 6) << summary.dump();
  EXPECT_NE(output.find("curl --cacert"), std::string::npos) << output;

  auto env = DemoEnv(run);
  const std::string gateway = env["port_gateway_1"];
  const std::string user = env["port_user_service_1"];
  const std::string registry = env["registry_url"].substr(GetParam().size() + 3);
  ASSERT_FALSE(gateway.empty());
  const std::string ca = " --cacert " + tls + "/ca.pem";
  const std::string client_cert = " --cert " + tls + "/client.pem --key " + tls + "/client.key";

  // The gateway: HTTPS verified against the demo's CA; plain HTTP gets a 400.
  auto [https_rc, https_out] =
      Capture("curl -s -m 5" + ca + " https://127.0.0.1:" + gateway + "/health");
  EXPECT_EQ(https_rc, 0) << https_out;
  auto [plain_rc, plain_out] = Capture("curl -s -m 5 http://127.0.0.1:" + gateway + "/health");
  EXPECT_NE(plain_out.find("tls_required"), std::string::npos) << plain_out;
  // user-service requires a client certificate.
  auto [mtls_rc, mtls_out] = Capture("curl -fs -m 5" + ca + client_cert + " https://127.0.0.1:" +
                                     user + "/health");
  EXPECT_EQ(mtls_rc, 0) << mtls_out;
  auto [anon_rc, anon_out] =
      Capture("curl -fs -m 5" + ca + " https://127.0.0.1:" + user + "/health");
  EXPECT_NE(anon_rc, 0) << "user-service answered a client without certificate: " << anon_out;

  if (GetParam() == "etcd") {
    ExpectEtcdAccessControl(tls, registry);
  } else {
    ExpectConsulAcls(tls, registry);
  }
  // No password or token on any command line of the demo's processes.
  for (const auto& r : RecordedProcesses(run)) {
    std::string cmdline = ReadFile("/proc/" + std::to_string(r.pid) + "/cmdline");
    EXPECT_EQ(cmdline.find("password"), std::string::npos) << r.name << ": " << cmdline;
    EXPECT_EQ(cmdline.find("token"), std::string::npos) << r.name << ": " << cmdline;
  }

  auto [stopped, stop_output] = demo.Run({"stop"}, 60s);
  EXPECT_TRUE(Succeeded(stopped)) << stop_output;
  EXPECT_TRUE(RecordedProcesses(run).empty()) << "PID files left after stop";
}

INSTANTIATE_TEST_SUITE_P(Registries, DemoE2eTest, ::testing::Values("etcd", "consul"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Registries, DemoE2eTlsTest, ::testing::Values("etcd", "consul"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace disco::testing
