// A hostile client at a TLS port, on real loopback sockets: a handshake
// that stalls, many stalled handshakes from one address, garbage where a
// ClientHello should be, an oversized client certificate chain, and SIGHUP
// sent to a service without TLS. Each costs the server a bounded amount and
// never keeps an honest client out.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ssl.hpp>
#include <csignal>
#include <filesystem>
#include <random>
#include <thread>

#include "disco/detail/asio.h"
#include "disco/http/server.h"
#include "disco/metrics.h"
#include "disco/tls.h"
#include "fixture/http_client.h"
#include "fixture/service_process.h"
#include "fixture/test_certs.h"
#include "fixture/util.h"

namespace disco::http {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::TcpConnect;

void Send(int fd, std::string_view bytes) {
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bytes.size()));
}

// Waits until the server closes `fd` (reads to EOF or reset); false if it
// is still open after `timeout`.
bool ClosedWithin(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  char buffer[4096];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 1))) <= 0) continue;
    const auto n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) return true;
  }
  return false;
}

// The first bytes of a TLS record carrying a ClientHello, and no more.
constexpr std::string_view kHelloHeader("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);

class TlsHostileTest : public ::testing::Test {
 protected:
  std::uint16_t StartServer(ServerOptions options, bool mutual = false) {
    options.access_log = false;
    options.metrics = &metrics_;
    options.service = "hostile";
    options.tls = *tls::Config::Load(
        tls::Role::kServer,
        {server_cert_.cert_file, server_cert_.key_file, mutual ? ca_.ca_file() : ""});
    Router router;
    router.Add("GET", "/ok", [](Request&) -> Awaitable<Response> {
      co_return Response::Json(200, "{\"ok\":true}");
    });
    server_ = std::make_unique<Server>(std::move(router), std::move(options));
    EXPECT_TRUE(server_->Start());
    return server_->port();
  }

  // One whole HTTPS GET of `path` with OpenSSL, presenting `cert` when
  // given; the status line, or the error.
  std::string HonestGet(std::uint16_t port, const testing::IssuedCert* cert = nullptr,
                        std::string_view path = "/ok") {
    namespace asio = boost::asio;
    try {
      asio::io_context ioc;
      asio::ssl::context context(asio::ssl::context::tls_client);
      context.load_verify_file(ca_.ca_file());
      if (cert != nullptr) {
        context.use_certificate_chain_file(cert->cert_file);
        context.use_private_key_file(cert->key_file, asio::ssl::context::pem);
      }
      asio::ssl::stream<asio::ip::tcp::socket> stream(ioc, context);
      stream.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
      stream.handshake(asio::ssl::stream_base::client);
      const std::string request =
          "GET " + std::string(path) + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
      asio::write(stream, asio::buffer(request));
      std::string reply;
      boost::system::error_code ec;
      asio::read(stream, asio::dynamic_buffer(reply), ec);
      return reply.substr(0, reply.find("\r\n"));
    } catch (const std::exception& e) {
      return std::string("error: ") + e.what();
    }
  }

  // 16 connections from each of 127.0.0.2-5 (a 64-connection server's
  // per-address share), each sending `first_bytes`; their descriptors.
  std::vector<int> FillFromFourAddresses(std::uint16_t port, std::string_view first_bytes) {
    std::vector<int> fds;
    for (int address = 2; address <= 5; ++address) {
      for (int i = 0; i < 16; ++i) {
        const int fd = TcpConnect(port, "127.0.0." + std::to_string(address));
        EXPECT_GE(fd, 0);
        if (fd < 0) return fds;
        if (!first_bytes.empty()) Send(fd, first_bytes);
        fds.push_back(fd);
      }
    }
    return fds;
  }

  double Failures(const std::string& reason) {
    const std::string key =
        "http_server_tls_handshake_failures_total{service=\"hostile\",reason=\"" + reason + "\"} ";
    const auto text = metrics_.Render();
    const auto at = text.find(key);
    return at == std::string::npos ? 0.0 : std::stod(text.substr(at + key.size()));
  }

  testing::TempDir dir_{"disco-tls-hostile"};
  testing::TestCa ca_{dir_.path(), "ca"};
  testing::IssuedCert server_cert_ = ca_.Issue("server", {.dns = {"hostile"}});
  MetricsRegistry metrics_;
  std::unique_ptr<Server> server_;
};

TEST_F(TlsHostileTest, AStalledHandshakeIsClosedAtTheRequestTimeout) {
  ServerOptions options;
  options.request_timeout = 500ms;
  const auto port = StartServer(options);
  const int fd = TcpConnect(port);
  ASSERT_GE(fd, 0);
  Send(fd, kHelloHeader);
  const auto start = Clock::now();
  EXPECT_TRUE(ClosedWithin(fd, 5s));
  EXPECT_GE(Clock::now() - start, 400ms) << "closed before its time";
  ::close(fd);
  EXPECT_TRUE(testing::WaitFor([&] { return Failures("timeout") == 1.0; }, 2s));
  EXPECT_EQ(HonestGet(port), "HTTP/1.1 200 OK");
}

// One address holds its per-address share of connections in stalled
// handshakes and asks for more; an honest client from another address is
// served at once, and the extra connections are closed straight away.
TEST_F(TlsHostileTest, StalledHandshakesFromOneAddressDoNotShutOutOthers) {
  ServerOptions options;
  options.max_connections = 64;  // 16 per address
  options.request_timeout = 5s;
  const auto port = StartServer(options);
  std::vector<int> stalled;
  for (int i = 0; i < 40; ++i) {
    const int fd = TcpConnect(port, "127.0.0.2");
    ASSERT_GE(fd, 0);
    Send(fd, kHelloHeader);
    stalled.push_back(fd);
  }
  int refused = 0;
  for (int fd : stalled) refused += ClosedWithin(fd, 50ms) ? 1 : 0;
  EXPECT_GE(refused, 40 - 16) << "the address got more than its share";

  const auto start = Clock::now();
  EXPECT_EQ(HonestGet(port), "HTTP/1.1 200 OK");
  EXPECT_LT(Clock::now() - start, 2s);
  for (int fd : stalled) ::close(fd);
}

// Past its per-address limit a TLS port closes the connection without a
// plaintext 429 (which a TLS client would read as a broken handshake), and
// the honest client's handshake fails as a closed connection.
TEST_F(TlsHostileTest, ARefusalAtATlsPortIsACloseWithoutPlaintext) {
  ServerOptions options;
  options.max_connections = 64;  // 16 per address
  options.request_timeout = 5s;
  const auto port = StartServer(options);
  std::vector<int> held;
  for (int i = 0; i < 16; ++i) {
    const int fd = TcpConnect(port, "127.0.0.2");
    ASSERT_GE(fd, 0);
    Send(fd, kHelloHeader);
    held.push_back(fd);
  }
  std::this_thread::sleep_for(200ms);  // all accepted
  const int refused = TcpConnect(port, "127.0.0.2");
  ASSERT_GE(refused, 0);
  Send(refused, kHelloHeader);
  std::string received;
  char buffer[512];
  const auto deadline = Clock::now() + 2s;
  while (Clock::now() < deadline) {
    pollfd p{refused, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const auto n = ::recv(refused, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    received.append(buffer, static_cast<std::size_t>(n));
  }
  EXPECT_EQ(received, "") << "a TLS client got plaintext";
  EXPECT_NE(
      metrics_.Render().find(
          "http_server_connections_refused_total{service=\"hostile\",reason=\"per_address\"} 1"),
      std::string::npos);
  ::close(refused);
  EXPECT_EQ(HonestGet(port), "HTTP/1.1 200 OK");  // another address is served
  for (int fd : held) ::close(fd);
}

// Connections from many addresses that send nothing at all fill the server.
// On a plain port such a connection is idle (waiting for its first request)
// and closed to make room; at a TLS port, waiting for its ClientHello, it
// must be too, or they keep everyone out for the whole request timeout.
TEST_F(TlsHostileTest, SilentConnectionsMakeRoomForAnHonestClient) {
  ServerOptions options;
  options.max_connections = 64;  // 16 per address
  options.request_timeout = 10s;
  const auto port = StartServer(options);
  const auto silent = FillFromFourAddresses(port, "");
  std::this_thread::sleep_for(300ms);  // all accepted
  const auto start = Clock::now();
  EXPECT_EQ(HonestGet(port), "HTTP/1.1 200 OK");
  EXPECT_LT(Clock::now() - start, 2s);
  for (int fd : silent) ::close(fd);
}

// Stalled handshakes (half a ClientHello) from many addresses fill the
// server, its reserved band too. The band's connections get the band's
// short time to start (as a plain connection's first request does), so
// that a health check finds a slot within seconds, not a request timeout.
TEST_F(TlsHostileTest, StalledHandshakesHoldTheReservedBandOnlyBriefly) {
  ServerOptions options;
  options.max_connections = 64;  // 16 per address; the last 16 the reserved band
  options.request_timeout = 10s;
  const auto port = StartServer(options);
  const auto stalled = FillFromFourAddresses(port, kHelloHeader);
  const auto start = Clock::now();
  std::string answer;
  // A health check: what the reserved band is for.
  while (Clock::now() - start < 8s &&
         (answer = HonestGet(port, nullptr, "/health")) != "HTTP/1.1 200 OK")
    std::this_thread::sleep_for(200ms);
  EXPECT_EQ(answer, "HTTP/1.1 200 OK");
  // The band's handshakes get 1 s, the rest request_timeout's 10 s: half of
  // that still tells them apart, with room for a slow (sanitized) run.
  EXPECT_LT(Clock::now() - start, 5s);
  for (int fd : stalled) ::close(fd);
}

TEST_F(TlsHostileTest, GarbageInsteadOfAClientHelloClosesTheConnection) {
  const auto port = StartServer(ServerOptions{});
  std::mt19937 random(7);
  std::string garbage(2048, '\0');
  for (auto& c : garbage) c = static_cast<char>(random());
  garbage[0] = '\x16';  // looks like a handshake record, then is not one
  for (int i = 0; i < 20; ++i) {
    const int fd = TcpConnect(port);
    ASSERT_GE(fd, 0);
    Send(fd, garbage);
    EXPECT_TRUE(ClosedWithin(fd, 5s));
    ::close(fd);
    std::shuffle(garbage.begin() + 1, garbage.end(), random);
  }
  EXPECT_TRUE(testing::WaitFor([&] { return Failures("handshake") == 20.0; }, 2s))
      << Failures("handshake");
  EXPECT_EQ(HonestGet(port), "HTTP/1.1 200 OK");
}

// OpenSSL takes a peer's chain up to 100 KiB (SSL_CTX_set_max_cert_list's
// default): a client certificate that carries 200 KB of names is refused
// in the handshake, before any verification work, and the server goes on.
TEST_F(TlsHostileTest, AnOversizedClientCertificateIsRefused) {
  const auto port = StartServer(ServerOptions{}, /*mutual=*/true);
  testing::CertSpec huge{.dns = {"client"}};
  for (int i = 0; i < 5000; ++i)
    huge.dns.push_back("name-" + std::to_string(i) + ".padding.example.org");
  const auto big = ca_.Issue("big-client", huge);
  const auto refused = HonestGet(port, &big);
  EXPECT_NE(refused, "HTTP/1.1 200 OK") << std::filesystem::file_size(big.cert_file);
  EXPECT_TRUE(testing::WaitFor([&] { return Failures("handshake") >= 1.0; }, 2s));
  const auto small = ca_.Issue("client", {.dns = {"client"}});
  EXPECT_EQ(HonestGet(port, &small), "HTTP/1.1 200 OK");
}

// SIGHUP reloads TLS files; a service without TLS has none, and must not
// die of it (SIGHUP's default action is to terminate).
TEST(ServiceSignalsTest, SighupLeavesAServiceWithoutTlsRunning) {
  testing::TempDir dir("disco-sighup");
  testing::ServiceOptions options;
  options.binary = testing::UserServicePath();
  options.registry = "memory://";
  options.db = dir.Sub("users.db");
  options.log_path = dir.Sub("user.log");
  testing::ServiceProcess service(options);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(service.Signal(SIGHUP));
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(service.running()) << service.ReadLog();
  EXPECT_EQ(testing::HttpRequest(service.port(), "GET", "/health").status, 200);
}

}  // namespace
}  // namespace disco::http
