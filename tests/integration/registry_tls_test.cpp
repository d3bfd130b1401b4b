// TLS to the registries: a real etcd serving its client port over TLS with
// --client-cert-auth, and a real Consul agent serving its API over HTTPS
// with verify_incoming; each reached through the registry URL's ca/cert/key
// parameters, and each refusing a client without a certificate.
#include <gtest/gtest.h>

#include <filesystem>

#include "disco/registry.h"
#include "fixture/consul_agent.h"
#include "fixture/process.h"
#include "fixture/test_certs.h"
#include "fixture/util.h"

namespace disco {
namespace {

using namespace std::chrono_literals;
using testing::CertSpec;
using testing::TempDir;
using testing::TestCa;
using testing::WaitFor;

ServiceInstance Instance(const std::string& id, std::uint16_t port) {
  return ServiceInstance{.service = "tls-svc", .id = id, .host = "127.0.0.1", .port = port};
}

// Registers through `url`, then lists: the round trip a service makes.
void ExpectRoundTrip(const std::string& url) {
  auto registry = MakeRegistry(url);
  ASSERT_TRUE(registry) << registry.error().ToString();
  auto registration = (*registry)->Register(Instance("a", 9001));
  ASSERT_TRUE(registration) << registration.error().ToString();
  auto listed = (*registry)->List("tls-svc");
  ASSERT_TRUE(listed) << listed.error().ToString();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_TRUE((*registration)->Deregister());
}

class RegistryTlsTest : public ::testing::Test {
 protected:
  TempDir dir_{"disco-registry-tls"};
  TestCa ca_{dir_.path(), "registry"};
  testing::IssuedCert server_ = ca_.Issue("server", {.dns = {"localhost"}});
  testing::IssuedCert client_ = ca_.Issue("client", {.dns = {"order-service"}});
};

TEST_F(RegistryTlsTest, EtcdWithClientCertificateAuth) {
  const auto client_port = testing::FreePort();
  const auto peer_port = testing::FreePort();
  const std::string client_url = "https://127.0.0.1:" + std::to_string(client_port);
  const std::string peer_url = "http://127.0.0.1:" + std::to_string(peer_port);
  testing::Process etcd({"etcd", "--name", "tls", "--data-dir", dir_.Sub("etcd"),
                         "--listen-client-urls", client_url, "--advertise-client-urls",
                         client_url, "--listen-peer-urls", peer_url,
                         "--initial-advertise-peer-urls", peer_url, "--initial-cluster",
                         "tls=" + peer_url, "--cert-file", server_.cert_file, "--key-file",
                         server_.key_file, "--client-cert-auth", "--trusted-ca-file",
                         ca_.ca_file(), "--log-level", "warn"},
                        dir_.Sub("etcd.log"));
  const std::string base = "etcd://127.0.0.1:" + std::to_string(client_port);
  const std::string url = base + "?ca=" + ca_.ca_file() + "&cert=" + client_.cert_file +
                          "&key=" + client_.key_file;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto registry = MakeRegistry(url);
        return registry && (*registry)->List("tls-svc").has_value();
      },
      20s, 100ms))
      << etcd.ReadLog();
  ExpectRoundTrip(url);

  // Without a client certificate etcd refuses the connection.
  auto anonymous = MakeRegistry(base + "?ca=" + ca_.ca_file());
  ASSERT_TRUE(anonymous);
  auto refused = (*anonymous)->List("tls-svc");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable) << refused.error().ToString();

  // A file that cannot be read is an error when the registry is made.
  auto missing = MakeRegistry(base + "?ca=" + dir_.Sub("missing-ca.pem"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(missing.error().message.find("missing-ca.pem"), std::string::npos)
      << missing.error().message;
  auto bad_flag = MakeRegistry(base + "?tls=maybe");
  ASSERT_FALSE(bad_flag);
  EXPECT_NE(bad_flag.error().message.find("tls='maybe'"), std::string::npos);
}

TEST_F(RegistryTlsTest, ConsulOverHttpsWithVerifyIncoming) {
  if (!testing::ConsulAgent::Available()) GTEST_SKIP() << "no consul binary";
  testing::ConsulAgent agent({.tls_ca = ca_.ca_file(),
                              .tls_cert = server_.cert_file,
                              .tls_key = server_.key_file});
  agent.Start();
  const std::string base = "consul://127.0.0.1:" + std::to_string(agent.https_port());
  const std::string url = base + "?ca=" + ca_.ca_file() + "&cert=" + client_.cert_file +
                          "&key=" + client_.key_file;
  ExpectRoundTrip(url);

  // Without a client certificate the agent refuses the handshake.
  auto anonymous = MakeRegistry(base + "?ca=" + ca_.ca_file());
  ASSERT_TRUE(anonymous);
  auto refused = (*anonymous)->List("tls-svc");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("TLS handshake"), std::string::npos)
      << refused.error().message;
  EXPECT_NE(refused.error().message.find("bad certificate"), std::string::npos)
      << refused.error().message;

  // Plain HTTP to the HTTPS port is a clear error, not a hang.
  auto plain = MakeRegistry(base);
  ASSERT_TRUE(plain);
  EXPECT_FALSE((*plain)->List("tls-svc"));

  // A CA the agent's certificate does not chain to.
  TestCa other(dir_.path(), "other");
  auto untrusted = MakeRegistry(base + "?ca=" + other.ca_file() + "&cert=" + client_.cert_file +
                                "&key=" + client_.key_file);
  ASSERT_TRUE(untrusted);
  auto refused_ca = (*untrusted)->List("tls-svc");
  ASSERT_FALSE(refused_ca);
  EXPECT_NE(refused_ca.error().message.find("certificate verify failed"), std::string::npos)
      << refused_ca.error().message;
}

}  // namespace
}  // namespace disco
