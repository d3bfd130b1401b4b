// The TLS stream (src/http/tls_stream.h) against a hostile or unusual
// client, on real loopback sockets, the client driven byte by byte through
// OpenSSL memory BIOs: a ClientHello and a request in one-byte TCP segments,
// a KeyUpdate the server must answer from inside a read, a record cut short
// and then silence, a close_notify followed by garbage, a half-close without
// one, and a request that times out mid-head (its 408 goes out encrypted).
// Each ends as it should, within its deadline, without spinning.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include <boost/asio/ssl.hpp>

#include "disco/detail/asio.h"
#include "disco/http/server.h"
#include "disco/metrics.h"
#include "disco/tls.h"
#include "fixture/http_client.h"
#include "fixture/test_certs.h"
#include "fixture/util.h"
#include "http/tls_stream.h"

namespace disco::http {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double CpuSeconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// A TLS client whose every byte on the wire is the test's: OpenSSL over
// memory BIOs, the ciphertext sent and received by hand.
class WireClient {
 public:
  WireClient(std::uint16_t port, const std::string& ca_file) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx_, ca_file.c_str(), nullptr);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    ssl_ = SSL_new(ctx_);
    in_ = BIO_new(BIO_s_mem());
    out_ = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(in_, -1);
    SSL_set_bio(ssl_, in_, out_);
    SSL_set_tlsext_host_name(ssl_, "hostile");
    SSL_set_connect_state(ssl_);
    fd_ = testing::TcpConnect(port);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~WireClient() {
    if (fd_ >= 0) ::close(fd_);
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }

  int fd() const { return fd_; }
  SSL* ssl() { return ssl_; }

  // What OpenSSL wrote, taken off its output BIO.
  std::string Pending() {
    std::string bytes;
    char chunk[4096];
    int n;
    while ((n = BIO_read(out_, chunk, sizeof chunk)) > 0) bytes.append(chunk, n);
    return bytes;
  }
  // Sends `bytes`, `segment` bytes per TCP segment (0: at once).
  void Send(const std::string& bytes, std::size_t segment = 0) {
    if (segment == 0) segment = bytes.size();
    for (std::size_t at = 0; at < bytes.size(); at += segment) {
      const std::size_t n = std::min(segment, bytes.size() - at);
      ASSERT_EQ(::send(fd_, bytes.data() + at, n, MSG_NOSIGNAL), static_cast<ssize_t>(n));
      if (segment < bytes.size()) std::this_thread::sleep_for(200us);
    }
  }
  bool Handshake(std::size_t segment = 0) {
    for (;;) {
      const int ok = SSL_do_handshake(ssl_);
      Send(Pending(), segment);
      if (ok == 1) return true;
      if (SSL_get_error(ssl_, ok) != SSL_ERROR_WANT_READ) return false;
      if (!Receive(5s)) return false;
    }
  }
  // The ciphertext of `plain` as application data.
  std::string Encrypt(std::string_view plain) {
    EXPECT_EQ(SSL_write(ssl_, plain.data(), static_cast<int>(plain.size())),
              static_cast<int>(plain.size()));
    return Pending();
  }
  // Reads the socket once into OpenSSL; false at the end or after `timeout`.
  bool Receive(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char chunk[16384];
    const auto n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      ended_ = true;
      return false;
    }
    BIO_write(in_, chunk, static_cast<int>(n));
    return true;
  }
  // Plaintext until the server ends the connection or `timeout` passes;
  // `how`: "close_notify", "eof" (ended without one), "error" or "timeout".
  std::string ReadAll(std::chrono::milliseconds timeout, std::string* how = nullptr) {
    std::string plain;
    const auto deadline = Clock::now() + timeout;
    std::string end = "timeout";
    for (;;) {
      char chunk[16384];
      int n;
      while ((n = SSL_read(ssl_, chunk, sizeof chunk)) > 0) plain.append(chunk, n);
      const int error = SSL_get_error(ssl_, n);
      Send(Pending());  // KeyUpdate answers and the like
      if (error == SSL_ERROR_ZERO_RETURN) {
        end = "close_notify";
        break;
      }
      if (error != SSL_ERROR_WANT_READ) {
        end = "error";
        break;
      }
      if (ended_) {
        end = "eof";
        break;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms) break;
      if (!Receive(left) && !ended_) break;
    }
    ERR_clear_error();
    if (how != nullptr) *how = end;
    return plain;
  }
  // Reads until `plain` holds `count` whole answers to /ok (or `timeout`).
  std::string ReadAnswers(int count, std::chrono::milliseconds timeout) {
    std::string plain;
    const auto deadline = Clock::now() + timeout;
    auto answers = [&] {
      int found = 0;
      for (auto at = plain.find("{\"ok\":true}"); at != std::string::npos;
           at = plain.find("{\"ok\":true}", at + 1))
        ++found;
      return found;
    };
    while (answers() < count && Clock::now() < deadline) {
      char chunk[16384];
      int n;
      while ((n = SSL_read(ssl_, chunk, sizeof chunk)) > 0) plain.append(chunk, n);
      Send(Pending());
      if (answers() >= count) break;
      if (SSL_get_error(ssl_, n) != SSL_ERROR_WANT_READ) break;
      if (!Receive(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now())))
        break;
    }
    ERR_clear_error();
    return plain;
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;
  BIO* out_ = nullptr;
  int fd_ = -1;
  bool ended_ = false;
};

constexpr std::string_view kGet = "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n";
constexpr std::string_view kGetClose = "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

class TlsStreamHostileTest : public ::testing::Test {
 protected:
  std::uint16_t StartServer(ServerOptions options = {}) {
    options.access_log = false;
    options.metrics = &metrics_;
    options.service = "hostile";
    options.tls = *tls::Config::Load(tls::Role::kServer,
                                     {server_cert_.cert_file, server_cert_.key_file, ""});
    Router router;
    router.Add("GET", "/ok", [](Request&) -> Awaitable<Response> {
      co_return Response::Json(200, "{\"ok\":true}");
    });
    server_ = std::make_unique<Server>(std::move(router), std::move(options));
    EXPECT_TRUE(server_->Start());
    return server_->port();
  }

  testing::TempDir dir_{"disco-tls-stream-hostile"};
  testing::TestCa ca_{dir_.path(), "ca"};
  testing::IssuedCert server_cert_ = ca_.Issue("server", {.dns = {"hostile"}});
  MetricsRegistry metrics_;
  std::unique_ptr<Server> server_;
};

TEST_F(TlsStreamHostileTest, AClientHelloAndARequestInOneByteSegmentsAreServed) {
  const auto port = StartServer();
  WireClient client(port, ca_.ca_file());
  ASSERT_TRUE(client.Handshake(/*segment=*/1));
  client.Send(client.Encrypt(kGet), 1);
  EXPECT_NE(client.ReadAnswers(1, 5s).find("{\"ok\":true}"), std::string::npos);
  // And the connection is still good for the next one.
  client.Send(client.Encrypt(kGetClose));
  std::string how;
  EXPECT_NE(client.ReadAll(5s, &how).find("HTTP/1.1 200"), std::string::npos);
}

TEST_F(TlsStreamHostileTest, AKeyUpdateRequestIsAnsweredAndTheConnectionGoesOn) {
  const auto port = StartServer();
  WireClient client(port, ca_.ca_file());
  ASSERT_TRUE(client.Handshake());
  if (SSL_version(client.ssl()) != TLS1_3_VERSION) GTEST_SKIP() << "KeyUpdate is TLS 1.3's";
  for (int round = 0; round < 3; ++round) {
    ASSERT_EQ(SSL_key_update(client.ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
    // The KeyUpdate goes out ahead of the request's record.
    client.Send(client.Encrypt(kGet));
    EXPECT_NE(client.ReadAnswers(1, 5s).find("{\"ok\":true}"), std::string::npos) << round;
  }
  // The server updated its sending keys (it answered the request for one):
  // what it sends now is under keys the client derived from its KeyUpdate.
  client.Send(client.Encrypt(kGetClose));
  std::string how;
  EXPECT_NE(client.ReadAll(5s, &how).find("HTTP/1.1 200"), std::string::npos);
}

TEST_F(TlsStreamHostileTest, ARecordCutShortThenSilenceIsClosedAtTheIdleTimeoutWithoutSpinning) {
  ServerOptions options;
  options.idle_timeout = 1500ms;
  const auto port = StartServer(options);
  WireClient client(port, ca_.ca_file());
  // The server's idle clock starts when its handshake ends, so ours starts
  // before the handshake: a stall after it cannot make the wait look short.
  const auto start = Clock::now();
  ASSERT_TRUE(client.Handshake());
  const std::string record = client.Encrypt(kGet);
  const double cpu = CpuSeconds();
  client.Send(record.substr(0, 10));
  std::string how;
  const std::string plain = client.ReadAll(10s, &how);
  const auto took = Clock::now() - start;
  EXPECT_TRUE(how == "eof" || how == "error") << how;
  EXPECT_EQ(plain, "");
  EXPECT_GE(took, 1400ms);
  EXPECT_LT(took, 5s);
  EXPECT_LT(CpuSeconds() - cpu, 0.5);  // waited, not spun
}

TEST_F(TlsStreamHostileTest, ARequestTimingOutMidHeadGetsAnEncrypted408) {
  ServerOptions options;
  options.request_timeout = 1s;
  const auto port = StartServer(options);
  WireClient client(port, ca_.ca_file());
  ASSERT_TRUE(client.Handshake());
  client.Send(client.Encrypt("GET /ok HTTP/1.1\r\nHo"));
  // And half a record of the head's next line: the read times out inside it.
  client.Send(client.Encrypt("st: x\r\n").substr(0, 7));
  const double cpu = CpuSeconds();
  std::string how;
  const std::string plain = client.ReadAll(5s, &how);
  EXPECT_EQ(plain.rfind("HTTP/1.1 408 ", 0), 0u) << plain;
  EXPECT_NE(how, "timeout");
  EXPECT_LT(CpuSeconds() - cpu, 0.5);
}

TEST_F(TlsStreamHostileTest, AHalfCloseWithoutCloseNotifyStillGetsItsAnswer) {
  const auto port = StartServer();
  WireClient client(port, ca_.ca_file());
  ASSERT_TRUE(client.Handshake());
  client.Send(client.Encrypt(kGet));
  ::shutdown(client.fd(), SHUT_WR);
  std::string how;
  const std::string plain = client.ReadAll(5s, &how);
  EXPECT_NE(plain.find("{\"ok\":true}"), std::string::npos) << plain;
  EXPECT_NE(how, "timeout");
}

TEST_F(TlsStreamHostileTest, ACloseNotifyFollowedByGarbageEndsTheConnectionQuietly) {
  const auto port = StartServer();
  WireClient client(port, ca_.ca_file());
  ASSERT_TRUE(client.Handshake());
  std::string bytes = client.Encrypt(kGet);
  ASSERT_EQ(SSL_shutdown(client.ssl()), 0);  // our close_notify; theirs not yet
  bytes += client.Pending();
  bytes += std::string(2000, '\x17');
  const double cpu = CpuSeconds();
  client.Send(bytes);
  std::string how;
  const std::string plain = client.ReadAll(5s, &how);
  EXPECT_NE(plain.find("{\"ok\":true}"), std::string::npos) << plain;  // answered first
  EXPECT_NE(how, "timeout");
  EXPECT_LT(CpuSeconds() - cpu, 0.5);
}

TEST_F(TlsStreamHostileTest, PipelinedRequestsFromAClientThatNeverReadsEndAtTheWriteDeadline) {
  ServerOptions options;
  options.request_timeout = 1s;
  const auto port = StartServer(options);
  WireClient client(port, ca_.ca_file());
  ASSERT_TRUE(client.Handshake());
  std::string batch;
  for (int i = 0; i < 200; ++i) batch += kGet;
  std::string record = client.Encrypt(batch);
  const double cpu = CpuSeconds();
  const auto start = Clock::now();
  bool ended = false;
  std::size_t at = 0;  // sent of `record`
  while (!ended && Clock::now() - start < 10s) {
    const auto sent =
        ::send(client.fd(), record.data() + at, record.size() - at, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      ended = true;  // reset: the server gave up on us
    } else if (sent < 0) {
      std::this_thread::sleep_for(20ms);
    } else {
      at += static_cast<std::size_t>(sent);
      if (at == record.size()) {  // the next records, under the next sequence numbers
        record = client.Encrypt(batch);
        at = 0;
      }
    }
  }
  EXPECT_TRUE(ended);
  // The server's side is gone within its write deadline (and a bit).
  EXPECT_LT(Clock::now() - start, 9s);
  // (No CPU bound here: until its send buffer fills the server answers
  // thousands of real requests, slow under the sanitizers.)
  (void)cpu;
}


// The stream itself: a write that began a record, found the socket full and
// was then abandoned (its deadline cancelled it) leaves that record half
// sent. A later write must fail, not let OpenSSL finish the old record in
// front of its own bytes (it would: a longer write passes OpenSSL's check).
TEST(TlsStreamTest, AWriteAbandonedHalfSentFailsTheWritesAfterIt) {
  namespace asio = boost::asio;
  testing::TempDir dir{"disco-tls-stream"};
  testing::TestCa ca{dir.path(), "stream"};
  const auto issued = ca.Issue("stream", {});
  asio::io_context ioc;
  asio::ssl::context server_context(asio::ssl::context::tls_server);
  server_context.use_certificate_chain_file(issued.cert_file);
  server_context.use_private_key_file(issued.key_file, asio::ssl::context::pem);
  asio::ssl::context client_context(asio::ssl::context::tls_client);

  asio::ip::tcp::acceptor acceptor(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ssl::stream<asio::ip::tcp::socket> client(ioc, client_context);
  // Small fixed buffers on both ends, and a client that never reads.
  client.next_layer().open(asio::ip::tcp::v4());
  client.next_layer().set_option(asio::socket_base::receive_buffer_size(4096));
  client.next_layer().connect(acceptor.local_endpoint());
  detail::Socket socket(ioc.get_executor());
  acceptor.accept(socket);
  socket.set_option(asio::socket_base::send_buffer_size(4096));
  socket.non_blocking(true);
  detail::TlsStream tls(socket, server_context);

  boost::system::error_code server_ec = asio::error::would_block, client_ec;
  tls.async_handshake(detail::TlsStream::Role::server,
                      [&](boost::system::error_code ec) { server_ec = ec; });
  client.async_handshake(asio::ssl::stream_base::client,
                         [&](boost::system::error_code ec) { client_ec = ec; });
  ioc.run();
  ioc.restart();
  ASSERT_FALSE(server_ec) << server_ec.message();
  ASSERT_FALSE(client_ec) << client_ec.message();

  // Writes until one waits for the socket, its record half sent.
  const std::string first(64 * 1024, 'a');
  std::array<asio::const_buffer, 2> out{};
  boost::system::error_code ec;
  bool waits = false;
  for (int i = 0; i < 1000 && !waits; ++i) {
    out = {asio::buffer(first), asio::const_buffer()};
    waits = !tls.WriteNow(out, ec);
    ASSERT_FALSE(ec) << ec.message();
  }
  ASSERT_TRUE(waits) << "the socket never filled";
  // The rest goes to async_write, whose deadline cancels it.
  boost::system::error_code abandoned;
  tls.async_write(out, [&](boost::system::error_code e, std::size_t) { abandoned = e; });
  ioc.poll();
  socket.cancel();
  ioc.run();
  ASSERT_EQ(abandoned, asio::error::operation_aborted);

  // Something else, longer than what was left: refused whole, nothing sent.
  const std::string second(128 * 1024, 'b');
  std::array<asio::const_buffer, 2> next{asio::buffer(second), asio::const_buffer()};
  EXPECT_TRUE(tls.WriteNow(next, ec));
  EXPECT_EQ(ec, asio::error::operation_aborted) << ec.message();
  EXPECT_EQ(next[0].size(), second.size());
}

}  // namespace
}  // namespace disco::http
