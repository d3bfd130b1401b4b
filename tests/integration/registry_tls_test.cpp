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

// A real etcd serving its client port over TLS with --client-cert-auth,
// trusting `ca_file`; data in dir/etcd (kept across restarts).
testing::Process StartTlsEtcd(const TempDir& dir, std::uint16_t client_port,
                              std::uint16_t peer_port, const testing::IssuedCert& server,
                              const std::string& ca_file) {
  const std::string client_url = "https://127.0.0.1:" + std::to_string(client_port);
  const std::string peer_url = "http://127.0.0.1:" + std::to_string(peer_port);
  return testing::Process(
      {"etcd", "--name", "tls", "--data-dir", dir.Sub("etcd"), "--listen-client-urls", client_url,
       "--advertise-client-urls", client_url, "--listen-peer-urls", peer_url,
       "--initial-advertise-peer-urls", peer_url, "--initial-cluster", "tls=" + peer_url,
       "--cert-file", server.cert_file, "--key-file", server.key_file, "--client-cert-auth",
       "--trusted-ca-file", ca_file, "--log-level", "warn"},
      dir.Sub("etcd.log"));
}

// Puts `from` where `to` is in one step (rename), as certificate managers
// do, so no reader sees half a file.
void Replace(const std::string& from, const std::string& to) {
  std::filesystem::rename(from, to);
}

bool Lists(Registry& registry, std::size_t count) {
  auto listed = registry.List("tls-svc");
  return listed && listed->size() == count;
}

class RegistryTlsTest : public ::testing::Test {
 protected:
  TempDir dir_{"disco-registry-tls"};
  TestCa ca_{dir_.path(), "registry"};
  testing::IssuedCert server_ = ca_.Issue("server", {.dns = {"localhost"}});
  testing::IssuedCert client_ = ca_.Issue("client", {.dns = {"order-service"}});

  // A new CA, and the server's and client's certificates and keys from it,
  // renamed over the files in use (the server stopped first).
  void RotateToANewCa() {
    TestCa rotated(dir_.path(), "rotated");
    const auto server2 = rotated.Issue("server2", {.dns = {"localhost"}});
    const auto client2 = rotated.Issue("client2", {.dns = {"order-service"}});
    Replace(server2.cert_file, server_.cert_file);
    Replace(server2.key_file, server_.key_file);
    Replace(client2.cert_file, client_.cert_file);
    Replace(client2.key_file, client_.key_file);
    Replace(rotated.ca_file(), ca_.ca_file());
  }
};

TEST_F(RegistryTlsTest, EtcdWithClientCertificateAuth) {
  const auto client_port = testing::FreePort();
  auto etcd = StartTlsEtcd(dir_, client_port, testing::FreePort(), server_, ca_.ca_file());
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
  auto bad_period = MakeRegistry(url + "&tls_reload=soon");
  ASSERT_FALSE(bad_period);
  EXPECT_NE(bad_period.error().message.find("tls_reload='soon'"), std::string::npos);
}

// The certificate names another address than the one dialled: refused.
TEST_F(RegistryTlsTest, EtcdRefusesACertificateForAnotherAddress) {
  const auto elsewhere = ca_.Issue("elsewhere", {.dns = {"etcd.example"}, .ips = {"127.0.0.9"}});
  const auto client_port = testing::FreePort();
  auto etcd = StartTlsEtcd(dir_, client_port, testing::FreePort(), elsewhere, ca_.ca_file());
  const std::string url = "etcd://127.0.0.1:" + std::to_string(client_port) +
                          "?ca=" + ca_.ca_file() + "&cert=" + client_.cert_file +
                          "&key=" + client_.key_file;
  // Give etcd time to listen, so that the refusals below are verification's.
  ASSERT_TRUE(WaitFor([&] { return testing::PortOpen(client_port); }, 20s, 100ms))
      << etcd.ReadLog();
  auto registry = MakeRegistry(url);
  ASSERT_TRUE(registry) << registry.error().ToString();
  auto refused = (*registry)->List("tls-svc");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable) << refused.error().ToString();
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

// etcd's client certificate and CA rotated on disk while etcd restarts on a
// new CA: a registry checking its files (tls_reload=1) makes its channels
// again and carries on; one that does not (tls_reload=0) is shut out.
TEST_F(RegistryTlsTest, EtcdClientTakesRotatedCertificatesWithoutRestart) {
  const auto client_port = testing::FreePort();
  const auto peer_port = testing::FreePort();
  auto etcd = StartTlsEtcd(dir_, client_port, peer_port, server_, ca_.ca_file());
  const std::string url = "etcd://127.0.0.1:" + std::to_string(client_port) +
                          "?ca=" + ca_.ca_file() + "&cert=" + client_.cert_file +
                          "&key=" + client_.key_file;
  auto registry = MakeRegistry(url + "&tls_reload=1");
  ASSERT_TRUE(registry) << registry.error().ToString();
  auto frozen = MakeRegistry(url + "&tls_reload=0");
  ASSERT_TRUE(frozen);
  ASSERT_TRUE(WaitFor([&] { return (*frozen)->List("tls-svc").has_value(); }, 20s, 100ms))
      << etcd.ReadLog();
  auto registration = (*registry)->Register(Instance("a", 9001));
  ASSERT_TRUE(registration) << registration.error().ToString();
  ASSERT_TRUE(Lists(**frozen, 1));

  etcd.Kill();
  RotateToANewCa();
  auto restarted = StartTlsEtcd(dir_, client_port, peer_port, server_, ca_.ca_file());

  // The registration is still there or registered again, seen through
  // channels made with the new files.
  EXPECT_TRUE(WaitFor([&] { return Lists(**registry, 1); }, 20s, 100ms)) << restarted.ReadLog();
  EXPECT_TRUE(WaitFor([&] { return (*registration)->state() == RegistrationState::kActive; }, 10s,
                      100ms));
  auto shut_out = (*frozen)->List("tls-svc");
  EXPECT_FALSE(shut_out) << "a registry that never re-read its files still got in";
  EXPECT_TRUE((*registration)->Deregister());
}

// The same rotation through Consul's HTTPS API: the agent restarts on a new
// CA; the registry's next connection re-reads the changed files.
TEST_F(RegistryTlsTest, ConsulClientTakesRotatedCertificatesWithoutRestart) {
  if (!testing::ConsulAgent::Available()) GTEST_SKIP() << "no consul binary";
  testing::ConsulAgent agent({.tls_ca = ca_.ca_file(),
                              .tls_cert = server_.cert_file,
                              .tls_key = server_.key_file});
  agent.Start();
  const std::string url = "consul://127.0.0.1:" + std::to_string(agent.https_port()) +
                          "?ca=" + ca_.ca_file() + "&cert=" + client_.cert_file +
                          "&key=" + client_.key_file;
  auto registry = MakeRegistry(url + "&tls_reload=1");
  ASSERT_TRUE(registry) << registry.error().ToString();
  auto frozen = MakeRegistry(url + "&tls_reload=0");
  ASSERT_TRUE(frozen);
  auto registration = (*registry)->Register(Instance("a", 9001));
  ASSERT_TRUE(registration) << registration.error().ToString();
  ASSERT_TRUE(Lists(**frozen, 1));

  agent.Stop();
  RotateToANewCa();
  agent.Start();

  // A dev agent forgets its services on restart: the registrant registers
  // again, over a connection made with the new files.
  EXPECT_TRUE(WaitFor([&] { return Lists(**registry, 1); }, 20s, 100ms));
  auto shut_out = (*frozen)->List("tls-svc");
  ASSERT_FALSE(shut_out);
  EXPECT_NE(shut_out.error().message.find("certificate verify failed"), std::string::npos)
      << shut_out.error().message;
  EXPECT_TRUE((*registration)->Deregister());
}

}  // namespace
}  // namespace disco
