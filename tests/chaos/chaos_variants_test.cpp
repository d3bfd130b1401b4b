// Chaos scenarios of chaos_test.cpp run once on the other stacks the demo
// runs on, with the same steps and bars (0 failed requests, every
// acknowledged order stored exactly once):
//   - MariaDB storage (issue 17): the rolling restart, on etcd. Every
//     instance of both services goes down and comes back under load, so
//     each one reconnects to MariaDB and re-runs its schema while the other
//     instance of its service keeps writing.
//   - mutual TLS on every hop (issue 14): kill -9 of a user-service, on etcd
//     and on Consul, with the registry itself over mTLS.
// Report lines carry db=mysql / tls=mtls beside the backend.
#include <gtest/gtest.h>

#include "chaos/chaos_scenarios.h"

namespace disco::testing {
namespace {

std::unique_ptr<ChaosStack> Stack(const std::string& backend, const std::string& db, bool tls) {
  ChaosOptions options;
  options.backend = backend;
  options.db = db;
  options.tls = tls;
  return std::make_unique<ChaosStack>(options);
}

TEST(ChaosMysqlTest, RollingRestartOnMariadbFailsNoRequest) {
  auto stack = Stack("etcd", "mysql", false);
  RollingRestart(*stack);
}

class ChaosTlsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ChaosTlsTest, KillNineOfAUserServiceOverMutualTlsFailsNoRequest) {
  auto stack = Stack(GetParam(), "sqlite", true);
  KillNineOfAUserService(*stack);
}

INSTANTIATE_TEST_SUITE_P(Backends, ChaosTlsTest, ::testing::Values("etcd", "consul"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace disco::testing
