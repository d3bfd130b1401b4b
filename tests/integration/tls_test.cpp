// TLS in the HTTP layer on real loopback sockets: a server serving HTTPS
// (and requiring client certificates), the client verifying the server's
// certificate, its name and the service's identity, the clear errors of
// each way it goes wrong, and certificates rotated under load. Certificates
// come from a throwaway CA made per test (fixture/test_certs.h).
#include "disco/tls.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/ssl.hpp>
#include <filesystem>
#include <thread>

#include "disco/detail/asio.h"
#include "disco/http/client.h"
#include "disco/http/server.h"
#include "disco/metrics.h"
#include "disco/registry.h"
#include "fixture/http_client.h"
#include "fixture/run_awaitable.h"
#include "fixture/test_certs.h"
#include "fixture/util.h"

namespace disco::http {
namespace {

using testing::CertSpec;
using testing::TestCa;
using namespace std::chrono_literals;

using testing::RunAwaitable;

Router NamedRouter(std::string name, std::atomic<int>* hits = nullptr) {
  Router router;
  router.Add("GET", "/who", [name, hits](Request&) -> Awaitable<Response> {
    if (hits) hits->fetch_add(1);
    co_return Response::Json(200, "{\"instance\":" + JsonQuote(name) + "}");
  });
  return router;
}

std::shared_ptr<tls::Config> MustLoad(tls::Role role, tls::Files files) {
  auto config = tls::Config::Load(role, std::move(files));
  EXPECT_TRUE(config) << config.error().ToString();
  return config ? *config : nullptr;
}

// The common name of the certificate a new TLS connection to `port` gets.
std::string PeerCommonName(std::uint16_t port, const std::string& ca_file) {
  namespace asio = boost::asio;
  asio::io_context ioc;
  asio::ssl::context context(asio::ssl::context::tls_client);
  context.load_verify_file(ca_file);
  asio::ssl::stream<asio::ip::tcp::socket> stream(ioc, context);
  stream.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
  stream.handshake(asio::ssl::stream_base::client);
  X509* peer = SSL_get1_peer_certificate(stream.native_handle());
  char name[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, name, sizeof name);
  X509_free(peer);
  return name;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = std::move(
        *MakeRegistry("memory://tls-" + std::to_string(reinterpret_cast<std::uintptr_t>(this))));
  }

  // An HTTPS server with a certificate from `ca` for `spec`.
  std::uint16_t StartServer(const std::string& name, const TestCa& ca, const CertSpec& spec,
                            bool mutual = false, std::atomic<int>* hits = nullptr) {
    auto issued = ca.Issue(name, spec);
    ServerOptions options = QuietOptions();
    options.service = name;
    options.tls = MustLoad(tls::Role::kServer, {issued.cert_file, issued.key_file,
                                                mutual ? ca.ca_file() : std::string()});
    return Start(NamedRouter(name, hits), options);
  }

  // A server of this test: its metrics here, no access log.
  ServerOptions QuietOptions(std::size_t threads = 1) {
    ServerOptions options;
    options.threads = threads;
    options.access_log = false;
    options.metrics = &metrics_;
    return options;
  }

  std::uint16_t Start(Router router, ServerOptions options) {
    auto server = std::make_unique<Server>(std::move(router), std::move(options));
    EXPECT_TRUE(server->Start());
    const auto port = server->port();
    servers_.push_back(std::move(server));
    return port;
  }

  ClientOptions ClientWith(std::shared_ptr<tls::Config> config) {
    ClientOptions options;
    options.tls = std::move(config);
    options.metrics = &metrics_;
    options.max_attempts = 1;
    return options;
  }

  Result<ClientResponse> Get(Client& client, const std::string& url) {
    ClientRequest request;
    request.url = url;
    return RunAwaitable(client.Send(std::move(request)));
  }

  void Register(const std::string& service, const std::string& id, std::uint16_t port,
                bool https = true) {
    ServiceInstance instance{.service = service, .id = id, .host = "127.0.0.1", .port = port};
    if (https) instance.metadata[std::string(kSchemeKey)] = std::string(kSchemeHttps);
    registrations_.push_back(std::move(*registry_->Register(instance)));
  }

  testing::TempDir dir_{"disco-tls"};
  TestCa ca_{dir_.path(), "main"};
  MetricsRegistry metrics_;
  std::unique_ptr<Registry> registry_;
  std::vector<std::unique_ptr<Server>> servers_;
  std::vector<std::unique_ptr<Registration>> registrations_;
};

TEST_F(TlsTest, ServesHttpsAndTheClientVerifiesIt) {
  const auto port = StartServer("user-service", ca_, {.dns = {"user-service"}});
  Client client(*registry_, ClientWith(MustLoad(tls::Role::kClient, {.ca_file = ca_.ca_file()})));
  auto response = Get(client, "https://127.0.0.1:" + std::to_string(port) + "/who");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_NE(response->body.find("user-service"), std::string::npos);
}

// A server that dies (kill -9) closes its TLS connections without a
// close_notify: the client's next request on a pooled one reads a TCP end
// that OpenSSL reports as "stream truncated". That is a closed connection,
// as a plain one's end is: retried once on a fresh connection, not "a bad
// answer" (which failed calls in the TLS demo's kill -9 scene).
TEST_F(TlsTest, APooledConnectionDroppedWithoutCloseNotifyIsRetriedOnAFreshOne) {
  namespace asio = boost::asio;
  auto issued = ca_.Issue("dropper", {.dns = {"dropper"}});
  asio::io_context ioc;
  asio::ssl::context context(asio::ssl::context::tls_server);
  context.use_certificate_chain_file(issued.cert_file);
  context.use_private_key_file(issued.key_file, asio::ssl::context::pem);
  asio::ip::tcp::acceptor acceptor(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = acceptor.local_endpoint().port();
  std::atomic<int> connections{0};
  std::thread server([&] {
    try {
      const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
      for (int i = 0; i < 2; ++i) {
        asio::ssl::stream<asio::ip::tcp::socket> stream(acceptor.accept(), context);
        ++connections;
        stream.handshake(asio::ssl::stream_base::server);
        std::string in;
        asio::read_until(stream, asio::dynamic_buffer(in), "\r\n\r\n");
        asio::write(stream, asio::buffer(ok));
        if (i == 0) {
          // The next request arrives, and the process "dies": TCP closed,
          // no close_notify.
          in.clear();
          asio::read_until(stream, asio::dynamic_buffer(in), "\r\n\r\n");
          stream.next_layer().close();
        } else {
          boost::system::error_code ignored;
          stream.shutdown(ignored);
        }
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "test server: " << e.what();
    }
  });
  {
    Register("dropper", "dropper-1", port);
    Client client(*registry_, ClientWith(MustLoad(tls::Role::kClient, {.ca_file = ca_.ca_file()})));
    // Both calls on one io_context: its connection pool is the one kept.
    int first_status = 0;
    auto second = RunAwaitable([&]() -> Awaitable<Result<ClientResponse>> {
      ClientRequest request;
      request.url = "http://dropper/who";
      auto first = co_await client.Send(request);
      if (!first) co_return first;
      first_status = first->status;
      co_return co_await client.Send(std::move(request));  // pooled; dies under it
    }());
    EXPECT_EQ(first_status, 200);
    EXPECT_TRUE(second) << second.error().ToString();
    EXPECT_EQ(second ? second->status : 0, 200);
  }
  if (connections.load() < 2) {
    // Unblock the server's accept when the client did not come back.
    boost::system::error_code ignored;
    asio::ip::tcp::socket poke(ioc);
    poke.connect({asio::ip::make_address("127.0.0.1"), port}, ignored);
    poke.close(ignored);
  }
  server.join();
  EXPECT_EQ(connections.load(), 2);
}

// Bodies larger than a TLS record and than the socket's buffers, both
// ways: the server reads a request body of many records, and its answer
// (many records too) fills the send buffer, so OpenSSL's writes wait for
// the socket and are taken up again where they stopped.
TEST_F(TlsTest, LargeBodiesCrossManyRecordsBothWays) {
  Router router;
  router.Add("POST", "/mirror", [](Request& request) -> Awaitable<Response> {
    std::string body = request.body;
    std::reverse(body.begin(), body.end());
    co_return Response::Text(200, body + body + body + body);
  });
  auto issued = ca_.Issue("mirror", {.dns = {"mirror"}});
  ServerOptions options = QuietOptions();
  options.body_limit = 2 * 1024 * 1024;
  options.tls = MustLoad(tls::Role::kServer, {issued.cert_file, issued.key_file, ""});
  const auto port = Start(std::move(router), options);
  auto client_options = ClientWith(MustLoad(tls::Role::kClient, {.ca_file = ca_.ca_file()}));
  client_options.response_limit = 16 * 1024 * 1024;
  Client client(*registry_, client_options);

  std::string body(1024 * 1024 + 7, '\0');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i * 7 % 26);
  ClientRequest request;
  request.method = "POST";
  request.url = "https://127.0.0.1:" + std::to_string(port) + "/mirror";
  request.body = body;
  auto answer = RunAwaitable(client.Send(std::move(request)));
  ASSERT_TRUE(answer) << answer.error().ToString();
  ASSERT_EQ(answer->status, 200);
  std::string reversed(body.rbegin(), body.rend());
  ASSERT_EQ(answer->body.size(), 4 * body.size());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(answer->body.compare(i * body.size(), body.size(), reversed) == 0)
        << "copy " << i << " of the answer differs";
  }
}

// A client that sends many requests at once and reads nothing for a while:
// the server's answers (a head and a 10 KB body each, written as one
// record) soon find the send buffer full (20 MB of answers against Linux's
// 4 MiB at most for it and the client's 64 KiB), wait, and go on where they
// stopped. Every answer arrives whole and in order. (strace: sendto fails
// with EAGAIN and is taken up again.)
TEST_F(TlsTest, PipelinedAnswersThatWaitForTheSocketArriveWholeAndInOrder) {
  namespace asio = boost::asio;
  Router router;
  router.Add("GET", "/n/{n}", [](Request& request) -> Awaitable<Response> {
    const std::string n(request.Param("n"));
    std::string body(10 * 1000, static_cast<char>('A' + std::stoi(n) % 26));
    body.replace(0, n.size(), n);
    co_return Response::Text(200, std::move(body));
  });
  auto issued = ca_.Issue("pipeline", {.dns = {"pipeline"}});
  ServerOptions options = QuietOptions();
  options.tls = MustLoad(tls::Role::kServer, {issued.cert_file, issued.key_file, ""});
  const auto port = Start(std::move(router), options);

  asio::io_context ioc;
  asio::ssl::context context(asio::ssl::context::tls_client);
  context.load_verify_file(ca_.ca_file());
  context.set_verify_mode(asio::ssl::verify_peer);
  asio::ssl::stream<asio::ip::tcp::socket> stream(ioc, context);
  stream.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
  // A fixed receive buffer (no autotuning), so the server's writes must wait.
  stream.next_layer().set_option(asio::socket_base::receive_buffer_size(64 * 1024));
  stream.handshake(asio::ssl::stream_base::client);
  constexpr int kRequests = 2000;
  std::string requests;
  for (int i = 0; i < kRequests; ++i)
    requests += "GET /n/" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  asio::write(stream, asio::buffer(requests));
  std::this_thread::sleep_for(300ms);  // the server meanwhile fills what it can

  std::string in;
  for (int i = 0; i < kRequests; ++i) {
    const std::size_t head_end = asio::read_until(stream, asio::dynamic_buffer(in), "\r\n\r\n");
    const std::string head = in.substr(0, head_end);
    ASSERT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << "answer " << i << ": " << head;
    const auto at = head.find("Content-Length: ");
    ASSERT_NE(at, std::string::npos) << head;
    const std::size_t length = std::stoul(head.substr(at + 16));
    ASSERT_EQ(length, 10'000u) << "answer " << i;
    if (in.size() < head_end + length)
      asio::read(stream, asio::dynamic_buffer(in), asio::transfer_exactly(head_end + length - in.size()));
    const std::string body = in.substr(head_end, length);
    const std::string n = std::to_string(i);
    ASSERT_EQ(body.substr(0, n.size()), n) << "answer " << i << " is another's";
    ASSERT_EQ(body.find_first_not_of(static_cast<char>('A' + i % 26), n.size()), std::string::npos)
        << "answer " << i << " is damaged";
    in.erase(0, head_end + length);
  }
}

TEST_F(TlsTest, AnUntrustedCaIsAClearError) {
  TestCa other(dir_.path(), "other");
  const auto port = StartServer("user-service", other, {.dns = {"user-service"}});
  Client client(*registry_, ClientWith(MustLoad(tls::Role::kClient, {.ca_file = ca_.ca_file()})));
  auto response = Get(client, "https://127.0.0.1:" + std::to_string(port) + "/who");
  ASSERT_FALSE(response);
  EXPECT_NE(response.error().message.find("certificate verify failed"), std::string::npos)
      << response.error().message;
  EXPECT_NE(response.error().message.find("unable to get local issuer certificate"),
            std::string::npos)
      << response.error().message;
}

TEST_F(TlsTest, AnExpiredCertificateIsRefused) {
  const auto port = StartServer("user-service", ca_,
                                {.dns = {"user-service"}, .not_before = -2h, .not_after = -1h});
  Client client(*registry_, ClientWith(MustLoad(tls::Role::kClient, {.ca_file = ca_.ca_file()})));
  auto response = Get(client, "https://127.0.0.1:" + std::to_string(port) + "/who");
  ASSERT_FALSE(response);
  EXPECT_NE(response.error().message.find("certificate has expired"), std::string::npos)
      << response.error().message;
}

TEST_F(TlsTest, ACertificateForAnotherAddressIsRefused) {
  const auto port =
      StartServer("user-service", ca_, {.dns = {"user-service"}, .ips = {"127.0.0.2"}});
  Client client(*registry_, ClientWith(MustLoad(tls::Role::kClient, {.ca_file = ca_.ca_file()})));
  auto response = Get(client, "https://127.0.0.1:" + std::to_string(port) + "/who");
  ASSERT_FALSE(response);
  EXPECT_NE(response.error().message.find("IP address mismatch"), std::string::npos)
      << response.error().message;
}

TEST_F(TlsTest, MutualTlsRefusesAClientWithoutCertificate) {
  const auto port = StartServer("user-service", ca_, {.dns = {"user-service"}}, /*mutual=*/true);
  const std::string url = "https://127.0.0.1:" + std::to_string(port) + "/who";
  {
    Client anonymous(*registry_,
                     ClientWith(MustLoad(tls::Role::kClient, {.ca_file = ca_.ca_file()})));
    auto response = Get(anonymous, url);
    ASSERT_FALSE(response);
    // TLS 1.3: the client learns of the refusal when it reads the answer.
    EXPECT_NE(response.error().message.find("certificate required"), std::string::npos)
        << response.error().message;
  }
  auto issued = ca_.Issue("order-service", {.dns = {"order-service"}});
  Client holder(
      *registry_,
      ClientWith(MustLoad(tls::Role::kClient, {issued.cert_file, issued.key_file, ca_.ca_file()})));
  auto response = Get(holder, url);
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_NE(metrics_.Render().find("http_server_tls_handshake_failures_total{service=\"user-"
                                   "service\",reason=\"handshake\"} 1"),
            std::string::npos)
      << metrics_.Render();
}

TEST_F(TlsTest, PlainHttpToTheTlsPortGetsA400ThatSaysSo) {
  const auto port = StartServer("user-service", ca_, {.dns = {"user-service"}});
  auto response = testing::RawHttp(port, "GET /who HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(response.status, 400);
  EXPECT_NE(response.body.find("\"error\":\"tls_required\""), std::string::npos) << response.body;
  EXPECT_NE(response.body.find("https://"), std::string::npos);
}

TEST_F(TlsTest, TlsToAPlainPortIsAClearError) {
  ServerOptions options = QuietOptions(1);
  const auto port = Start(NamedRouter("plain"), options);
  Client client(*registry_, ClientWith(MustLoad(tls::Role::kClient, {.ca_file = ca_.ca_file()})));
  auto response = Get(client, "https://127.0.0.1:" + std::to_string(port) + "/who");
  ASSERT_FALSE(response);
  EXPECT_NE(response.error().message.find("TLS handshake with 127.0.0.1:"), std::string::npos)
      << response.error().message;
}

TEST_F(TlsTest, BadFilesAreClearErrors) {
  auto a = ca_.Issue("a", {});
  auto b = ca_.Issue("b", {});
  auto mismatched = tls::Config::Load(tls::Role::kServer, {a.cert_file, b.key_file, ""});
  ASSERT_FALSE(mismatched);
  EXPECT_NE(mismatched.error().message.find("does not match the certificate"), std::string::npos)
      << mismatched.error().message;

  auto missing = tls::Config::Load(tls::Role::kServer, {dir_.Sub("nope.pem"), a.key_file, ""});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nope.pem': No such file or directory"), std::string::npos)
      << missing.error().message;

  std::filesystem::copy_file(a.key_file, dir_.Sub("key-as-cert.pem"));
  auto garbage =
      tls::Config::Load(tls::Role::kServer, {dir_.Sub("key-as-cert.pem"), a.key_file, ""});
  ASSERT_FALSE(garbage);
  EXPECT_NE(garbage.error().message.find("is not a PEM certificate"), std::string::npos)
      << garbage.error().message;

  // An encrypted key: a clear error, at once (OpenSSL's default would ask
  // for the passphrase on the terminal and wait).
  {
    FILE* in = std::fopen(a.key_file.c_str(), "r");
    ASSERT_NE(in, nullptr);
    EVP_PKEY* key = PEM_read_PrivateKey(in, nullptr, nullptr, nullptr);
    std::fclose(in);
    ASSERT_NE(key, nullptr);
    FILE* out = std::fopen(dir_.Sub("encrypted.key").c_str(), "w");
    ASSERT_NE(out, nullptr);
    char passphrase[] = "secret-passphrase";
    EXPECT_EQ(PEM_write_PrivateKey(out, key, EVP_aes_256_cbc(),
                                   reinterpret_cast<unsigned char*>(passphrase),
                                   sizeof passphrase - 1, nullptr, nullptr),
              1);
    std::fclose(out);
    EVP_PKEY_free(key);
  }
  for (const auto role : {tls::Role::kServer, tls::Role::kClient}) {
    auto encrypted = tls::Config::Load(role, {a.cert_file, dir_.Sub("encrypted.key"), ""});
    ASSERT_FALSE(encrypted);
    EXPECT_NE(encrypted.error().message.find("is encrypted (it has a passphrase)"),
              std::string::npos)
        << encrypted.error().message;
  }

  auto half = tls::Config::Load(tls::Role::kClient, {a.cert_file, "", ca_.ca_file()});
  ASSERT_FALSE(half);
  EXPECT_NE(half.error().message.find("both files or neither"), std::string::npos);

  auto no_key = tls::Config::Load(tls::Role::kServer, {});
  ASSERT_FALSE(no_key);
}

TEST_F(TlsTest, AReloadThatFailsKeepsTheOldCertificate) {
  auto issued = ca_.Issue("user-service", {.dns = {"user-service"}});
  auto config = MustLoad(tls::Role::kServer, {issued.cert_file, issued.key_file, ""});
  ServerOptions options = QuietOptions(1);
  options.tls = config;
  const auto port = Start(NamedRouter("user-service"), options);

  std::filesystem::remove(issued.cert_file);
  auto reloaded = config->Reload();
  ASSERT_FALSE(reloaded);
  EXPECT_NE(reloaded.error().message.find("No such file or directory"), std::string::npos);
  EXPECT_EQ(config->generation(), 1u);

  // New connections still get the old certificate.
  Client client(*registry_, ClientWith(MustLoad(tls::Role::kClient, {.ca_file = ca_.ca_file()})));
  auto response = Get(client, "https://127.0.0.1:" + std::to_string(port) + "/who");
  ASSERT_TRUE(response) << response.error().ToString();
}

// Discovery: calls go only to instances whose certificate names the service.
// An instance with a valid certificate of the same CA, but for another
// service, is an impostor: it gets no request.
TEST_F(TlsTest, OnlyInstancesHoldingTheServicesIdentityGetRequests) {
  std::atomic<int> genuine_hits{0};
  std::atomic<int> impostor_hits{0};
  std::atomic<int> spiffe_hits{0};
  Register("user-service", "genuine",
           StartServer("genuine", ca_, {.dns = {"user-service"}}, false, &genuine_hits));
  Register("user-service", "impostor",
           StartServer("impostor", ca_, {.dns = {"order-service"}}, false, &impostor_hits));
  Register("user-service", "spiffe",
           StartServer("spiffe", ca_, {.uris = {"spiffe://shop.example/ns/shop/sa/user-service"}},
                       false, &spiffe_hits));
  auto options = ClientWith(MustLoad(tls::Role::kClient, {.ca_file = ca_.ca_file()}));
  options.max_attempts = 3;
  options.outlier_detection.reset();  // every pick sees all three instances
  Client client(*registry_, options);
  for (int i = 0; i < 30; ++i) {
    auto response = Get(client, "http://user-service/who");
    ASSERT_TRUE(response) << response.error().ToString();
    EXPECT_EQ(response->status, 200);
  }
  EXPECT_EQ(impostor_hits.load(), 0);
  EXPECT_GT(genuine_hits.load(), 5);
  EXPECT_GT(spiffe_hits.load(), 5);

  // Alone, the impostor's refusal is the caller's error, and says why.
  auto only = ClientWith(MustLoad(tls::Role::kClient, {.ca_file = ca_.ca_file()}));
  Register("billing", "impostor-2",
           StartServer("impostor-2", ca_, {.dns = {"order-service"}}, false, &impostor_hits));
  Client lone(*registry_, only);
  auto response = Get(lone, "http://billing/who");
  ASSERT_FALSE(response);
  EXPECT_NE(response.error().message.find("is not 'billing'"), std::string::npos)
      << response.error().message;
  EXPECT_EQ(impostor_hits.load(), 0);
}

// SPIFFE IDs name the service by their last segment, and only well-formed
// IDs name anyone: no dot segments, empty segments or escapes.
TEST_F(TlsTest, OnlyWellFormedSpiffeIdsNameAService) {
  auto names = [&](const std::string& uri) {
    auto issued =
        ca_.Issue("spiffe-" + std::to_string(std::hash<std::string>{}(uri)), {.uris = {uri}});
    FILE* f = std::fopen(issued.cert_file.c_str(), "r");
    X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    const bool named = tls::PeerHasIdentity(cert, "user-service");
    X509_free(cert);
    return named;
  };
  EXPECT_TRUE(names("spiffe://shop.example/ns/shop/sa/user-service"));
  EXPECT_TRUE(names("spiffe://shop.example/user-service"));
  EXPECT_FALSE(names("spiffe://shop.example/ns/shop/sa/order-service"));
  EXPECT_FALSE(names("spiffe://user-service"));  // a trust domain, no path
  EXPECT_FALSE(names("spiffe://x/other/../user-service"));
  EXPECT_FALSE(names("spiffe://x/./user-service"));
  EXPECT_FALSE(names("spiffe://x//user-service"));
  EXPECT_FALSE(names("spiffe://x/user%2Dservice"));
  EXPECT_FALSE(names("https://x/user-service"));
}

TEST_F(TlsTest, ACallerWithoutTlsSettingsDoesNotSpeakPlainHttpToAnHttpsInstance) {
  std::atomic<int> hits{0};
  Register("user-service", "a", StartServer("a", ca_, {.dns = {"user-service"}}, false, &hits));
  Client client(*registry_, ClientWith(nullptr));
  auto response = Get(client, "http://user-service/who");
  ASSERT_FALSE(response);
  EXPECT_NE(response.error().message.find("serves HTTPS"), std::string::npos)
      << response.error().message;
  EXPECT_NE(response.error().message.find("--tls-ca"), std::string::npos);
  EXPECT_EQ(hits.load(), 0);
}

// The server's count of completed handshakes, full or resumed.
std::string HandshakeSeries(const std::string& service, bool resumed) {
  return "http_server_tls_handshakes_total{service=\"" + service + "\",resumed=\"" +
         (resumed ? "true" : "false") + "\"} ";
}

// Session resumption: each Get below runs on its own io_context, so each is
// a new connection; after the first, they resume its session (TLS 1.3
// tickets, TLS 1.2 session ids). A resumed session still carries the
// server's certificate and the identity is checked on it: the discovered
// calls succeed only because it names user-service. A client's reload
// starts with no session; an impostor's failed identity leaves none behind.
TEST_F(TlsTest, NewConnectionsResumeTheSessionAndTheIdentityIsStillChecked) {
  for (const int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    SCOPED_TRACE(version == TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2");
    const std::string v = version == TLS1_3_VERSION ? "13" : "12";
    auto genuine = ca_.Issue("genuine-" + v, {.dns = {"user-service"}});
    auto impostor = ca_.Issue("impostor-" + v, {.dns = {"order-service"}});
    std::uint16_t ports[2];
    for (int i = 0; i < 2; ++i) {
      const auto& issued = i == 0 ? genuine : impostor;
      ServerOptions options = QuietOptions();
      options.service = (i == 0 ? "genuine-" : "impostor-") + v;
      options.tls = MustLoad(tls::Role::kServer, {issued.cert_file, issued.key_file, ""});
      SSL_CTX_set_max_proto_version(options.tls->context()->native_handle(), version);
      ports[i] = Start(NamedRouter(options.service), options);
    }
    Register("billing-" + v, "impostor", ports[1]);
    auto client_tls = MustLoad(tls::Role::kClient, {.ca_file = ca_.ca_file()});
    auto options = ClientWith(client_tls);
    options.outlier_detection.reset();  // the impostor is dialled on every call
    Client client(*registry_, options);

    // The genuine instance's identity is user-service: called by that name.
    Register("user-service", "genuine-" + v, ports[0]);
    for (int i = 0; i < 4; ++i) {
      auto response = Get(client, "http://user-service/who");
      ASSERT_TRUE(response) << response.error().ToString();
      EXPECT_EQ(response->status, 200);
    }
    std::string text = metrics_.Render();
    EXPECT_NE(text.find(HandshakeSeries("genuine-" + v, false) + "1\n"), std::string::npos) << text;
    EXPECT_NE(text.find(HandshakeSeries("genuine-" + v, true) + "3\n"), std::string::npos) << text;

    // After a reload of the client's settings: a full handshake again.
    ASSERT_TRUE(client_tls->Reload());
    ASSERT_TRUE(Get(client, "http://user-service/who"));
    text = metrics_.Render();
    EXPECT_NE(text.find(HandshakeSeries("genuine-" + v, false) + "2\n"), std::string::npos) << text;

    // The impostor fails the identity check every time, and its sessions are
    // never kept.
    for (int i = 0; i < 3; ++i) {
      auto response = Get(client, "http://billing-" + v + "/who");
      ASSERT_FALSE(response);
      EXPECT_NE(response.error().message.find("is not 'billing-" + v + "'"), std::string::npos)
          << response.error().message;
    }
    // Never resumed (the server may count a handshake just after the client gave up).
    std::this_thread::sleep_for(200ms);
    EXPECT_NE(metrics_.Render().find(HandshakeSeries("impostor-" + v, true) + "0\n"),
              std::string::npos)
        << metrics_.Render();
    registrations_.clear();
  }
}

// Rotation: the server's files are replaced and reloaded while clients call
// it on new and kept-alive connections; no call fails, and connections made
// after the reload get the new certificate.
TEST_F(TlsTest, RotationUnderLoadFailsNoCall) {
  auto first = ca_.Issue("user-service", {.dns = {"user-service"}});
  auto config = MustLoad(tls::Role::kServer, {first.cert_file, first.key_file, ""});
  ServerOptions options = QuietOptions(2);
  options.tls = config;
  const auto port = Start(NamedRouter("user-service"), options);
  const std::string url = "https://127.0.0.1:" + std::to_string(port) + "/who";
  auto client_tls = MustLoad(tls::Role::kClient, {.ca_file = ca_.ca_file()});

  std::atomic<bool> stop{false};
  // Calls that succeeded in each window: before the first reload, between
  // two, after the last. Every window must have some, so that calls really
  // ran across each reload (a floor on the total depended on the machine:
  // 87-95 calls under ASan on a slow host against a floor of 100).
  constexpr int kReloads = 5;
  std::array<std::atomic<int>, kReloads + 1> ok_in_window{};
  std::atomic<int> window{0};
  std::atomic<int> failed{0};
  std::string first_failure;
  std::mutex failure_mu;
  std::vector<std::thread> callers;
  for (int t = 0; t < 3; ++t) {
    callers.emplace_back([&, t] {
      // Thread 0 keeps its connection; the others open a new one per call.
      auto client_options = ClientWith(client_tls);
      if (t > 0) client_options.max_idle_per_endpoint = 0;
      Client client(*registry_, client_options);
      const auto until = std::chrono::steady_clock::now() + 30s;  // bound, whatever happens
      while (!stop.load() && std::chrono::steady_clock::now() < until) {
        auto response = Get(client, url);
        if (response && response->status == 200) {
          ok_in_window[window.load()].fetch_add(1);
        } else {
          failed.fetch_add(1);
          std::lock_guard lock(failure_mu);
          if (first_failure.empty())
            first_failure = response ? std::to_string(response->status) : response.error().message;
        }
      }
    });
  }
  const auto wait_for_calls = [&] {  // 150 ms, longer if calls are slow
    std::this_thread::sleep_for(150ms);
    const auto until = std::chrono::steady_clock::now() + 3s;
    while (ok_in_window[window.load()].load() < 3 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(10ms);
  };
  for (int round = 0; round < kReloads; ++round) {
    wait_for_calls();
    auto next = ca_.Issue("next-" + std::to_string(round), {.dns = {"user-service"}});
    // Replace the files in place (as cert-manager or a renewal cron does).
    std::filesystem::rename(next.cert_file, first.cert_file);
    std::filesystem::rename(next.key_file, first.key_file);
    auto reloaded = config->Reload();
    ASSERT_TRUE(reloaded) << reloaded.error().ToString();
    window.fetch_add(1);
  }
  EXPECT_EQ(PeerCommonName(port, ca_.ca_file()), "next-4");
  wait_for_calls();
  stop = true;
  for (auto& caller : callers) caller.join();
  EXPECT_EQ(failed.load(), 0) << first_failure;
  for (int w = 0; w <= kReloads; ++w)
    EXPECT_GE(ok_in_window[w].load(), 3) << "calls that succeeded in window " << w;
  EXPECT_EQ(config->generation(), 6u);
}

}  // namespace
}  // namespace disco::http
