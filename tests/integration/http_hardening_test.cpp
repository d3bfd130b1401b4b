// The HTTP server against a hostile client (issue 12): every buffer bounded,
// RFC 9112's framing rules (Transfer-Encoding, Host), 408 on a stalled
// request, lingering close after an early error answer, and connection
// limits in all and per client address. Real loopback sockets; clients
// bind to other 127.0.0.x addresses to be "other clients".
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "disco/http/server.h"
#include "fixture/http_client.h"
#include "fixture/util.h"

namespace disco::http {
namespace {

using testing::HttpRequest;
using testing::ParseHttpResponse;
using testing::RawHttp;
using namespace std::chrono_literals;

Router EchoRouter() {
  Router router;
  router.Add("GET", "/echo",
             [](Request&) -> Awaitable<Response> { co_return Response::Json(200, "{}"); });
  router.Add("POST", "/echo",
             [](Request& r) -> Awaitable<Response> { co_return Response::Text(200, r.body); });
  router.Add("GET", "/secret", [](Request&) -> Awaitable<Response> {
    co_return Response::Json(200, "{\"smuggled\":true}");
  });
  return router;
}

ServerOptions Options() {
  ServerOptions o;
  o.threads = 2;
  o.service = "hardening";
  o.access_log = false;
  o.request_timeout = 2s;
  return o;
}

// A blocking TCP client socket to 127.0.0.1:port bound to `from` (another
// loopback address stands for another client), 5 s on every send and recv.
int ConnectFrom(std::uint16_t port, const char* from = "127.0.0.1") {
  return disco::testing::TcpConnect(port, from, std::chrono::seconds(5));
}

bool SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Everything the server sends until it closes (or 5 s of silence).
std::string ReadAll(int fd) {
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

// One request on its own connection from `from`; the answer parsed.
testing::HttpResponse Get(std::uint16_t port, const std::string& path,
                          const char* from = "127.0.0.1") {
  int fd = ConnectFrom(port, from);
  if (fd < 0) return {};
  SendAll(fd, "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto answer = ParseHttpResponse(ReadAll(fd));
  ::close(fd);
  return answer;
}

// True when the server has closed `fd` (EOF or reset) within `wait`.
bool ClosedByServer(int fd, std::chrono::milliseconds wait) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0) return false;
  char c;
  return ::recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

// Defect 1: a chunk-size line (with its extensions) or a trailer section
// that never ends was buffered whole (200 MiB took a service past 600 MB).
// Now the server answers 400 once header_limit bytes wait unparsed.
TEST(HttpHardeningTest, ChunkLinesAndTrailersAreBounded) {
  auto options = Options();
  options.header_limit = 8 * 1024;
  Server server(EchoRouter(), options);
  ASSERT_TRUE(server.Start());
  const std::string head = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  // 4 MiB of one chunk extension, never ended: the old server waited for
  // more with all of it in memory until its request timeout.
  auto extension = RawHttp(server.port(), head + "1;ext=" + std::string(4 << 20, 'a'), 10s);
  EXPECT_EQ(extension.status, 400);
  EXPECT_EQ(extension.Json()["error"], "chunk_line_too_long");
  auto trailer =
      RawHttp(server.port(), head + "1\r\nz\r\n0\r\nX-Trailer: " + std::string(4 << 20, 't'), 10s);
  EXPECT_EQ(trailer.status, 400);
  EXPECT_EQ(trailer.Json()["error"], "chunk_line_too_long");
  // A control character inside a quoted extension (Beast lets a bare LF
  // or NUL through there) is refused too.
  for (std::string ext : {std::string("5;a=\"b\nc\""), std::string("5;a=\"b\0c\"", 10)}) {
    auto answer = RawHttp(server.port(), head + ext + "\r\nhello\r\n0\r\n\r\n" +
                                             "GET /secret HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(answer.status, 400);
    EXPECT_EQ(answer.raw.find("smuggled"), std::string::npos);
  }
  // Within the bound, both still work.
  auto fine = RawHttp(server.port(),
                      "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n3;ext=" +
                          std::string(1000, 'e') +
                          "\r\nabc\r\n0\r\nX-T: " + std::string(1000, 't') + "\r\n\r\n");
  EXPECT_EQ(fine.status, 200);
  EXPECT_EQ(fine.body, "abc");
}

// Defect 4: Transfer-Encoding other than "chunked" alone was read as "no
// body", and the body was run as the next request (smuggling).
TEST(HttpHardeningTest, TransferEncodingOtherThanChunkedIsRefused) {
  Server server(EchoRouter(), Options());
  ASSERT_TRUE(server.Start());
  const std::string smuggled = "GET /secret HTTP/1.1\r\nHost: x\r\n\r\n";
  for (std::string coding : {"identity", "chunked, identity", "gzip", "chunked;x=1, identity",
                             ";, chunked", ";a=b,chunked", "chunked;x=1", "\"chunked\""}) {
    SCOPED_TRACE(coding);
    auto answer =
        RawHttp(server.port(), "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + coding +
                                   "\r\n\r\n" + smuggled);
    EXPECT_EQ(answer.status, 400);
    EXPECT_EQ(answer.raw.find("smuggled"), std::string::npos) << "the body ran as a request";
    EXPECT_NE(answer.raw.find("Connection: close"), std::string::npos);
  }
  // A coding before chunked is well-formed but not implemented.
  auto gzip = RawHttp(server.port(),
                      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0"
                      "\r\n\r\n" +
                          smuggled);
  EXPECT_EQ(gzip.status, 501);
  EXPECT_EQ(gzip.raw.find("smuggled"), std::string::npos);
  // Two fields, read as one list.
  auto split = RawHttp(server.port(),
                       "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       "Transfer-Encoding: identity\r\n\r\n0\r\n\r\n" +
                           smuggled);
  EXPECT_EQ(split.status, 400);
  EXPECT_EQ(split.raw.find("smuggled"), std::string::npos);
  // With Content-Length, whatever the order.
  auto both = RawHttp(server.port(),
                      "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n"
                      "Content-Length: 3\r\n\r\nabc" +
                          smuggled);
  EXPECT_EQ(both.status, 400);
  auto old =
      RawHttp(server.port(), "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  EXPECT_EQ(old.status, 400);
  // Plain chunked still works, in any letter case.
  auto chunked = RawHttp(server.port(),
                         "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         "Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  EXPECT_EQ(chunked.status, 200);
  EXPECT_EQ(chunked.body, "abc");
}

// Defect 7: an HTTP/1.1 request needs exactly one Host (RFC 9112 §3.2).
TEST(HttpHardeningTest, Http11NeedsExactlyOneHost) {
  Server server(EchoRouter(), Options());
  ASSERT_TRUE(server.Start());
  auto none = RawHttp(server.port(), "GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(none.status, 400);
  EXPECT_NE(none.Json()["message"].get<std::string>().find("Host"), std::string::npos);
  auto two = RawHttp(server.port(), "GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
  EXPECT_EQ(two.status, 400);
  auto empty = RawHttp(server.port(), "GET /echo HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(empty.status, 200) << "an empty Host is valid (no authority)";
  auto http10 = RawHttp(server.port(), "GET /echo HTTP/1.0\r\n\r\n");
  EXPECT_EQ(http10.status, 200) << "HTTP/1.0 needs no Host";
}

// Defect 8, first half: a request that stalls gets 408 before the close
// (HttpServerTest.SlowRequestsAreCutOff: in the head), also in the body.
TEST(HttpHardeningTest, StalledBodyGets408) {
  auto options = Options();
  options.request_timeout = 300ms;
  Server server(EchoRouter(), options);
  ASSERT_TRUE(server.Start());
  auto start = std::chrono::steady_clock::now();
  auto body =
      RawHttp(server.port(), "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab", 5s);
  EXPECT_EQ(body.status, 408);
  EXPECT_EQ(body.Json()["error"], "request_timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

// Defect 8, second half: a client that sends its whole (too large) body
// before it reads the answer gets the 413, not a reset: the server reads
// and discards the rest for a while (lingering close). The old server
// stopped after 1 MiB and 500 ms, and the client's send failed.
TEST(HttpHardeningTest, ClientStillSendingReadsThe413) {
  auto options = Options();
  options.body_limit = 1024;
  Server server(EchoRouter(), options);
  ASSERT_TRUE(server.Start());
  int fd = ConnectFrom(server.port());
  ASSERT_GE(fd, 0);
  const std::size_t size = 8 << 20;
  ASSERT_TRUE(SendAll(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                              std::to_string(size) + "\r\n\r\n"));
  const std::string block(64 * 1024, 'b');
  bool sent = true;
  for (std::size_t done = 0; done < size && sent; done += block.size()) sent = SendAll(fd, block);
  EXPECT_TRUE(sent) << "the server reset the connection while the body was being sent";
  auto answer = ParseHttpResponse(ReadAll(fd));
  ::close(fd);
  EXPECT_EQ(answer.status, 413);
  EXPECT_EQ(answer.Json()["error"], "payload_too_large");
}

// Many connections each sending a large body slowly: each is within
// body_limit, but together they were bounded only by max_connections ×
// body_limit (16 GiB at the defaults). The server's body budget bounds the
// sum: a body that does not fit gets 503 + Retry-After, and the bytes are
// given back once a request is answered or its connection gone.
TEST(HttpHardeningTest, BodiesHeldAtOnceAreBounded) {
  auto options = Options();
  options.body_limit = 256 * 1024;
  options.body_memory_limit = 512 * 1024;
  // Long: the slow bodies must be held until the test lets them go, and
  // their bytes must come back when their connections end, not at a 408.
  options.request_timeout = 30s;
  Server server(EchoRouter(), options);
  ASSERT_TRUE(server.Start());
  const std::string part(200 * 1024, 'p');
  auto post_head = [](std::size_t length) {
    return "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " +
           std::to_string(length) + "\r\n\r\n";
  };
  // Two slow clients hold 400 KiB of their 250 KiB bodies each, unfinished.
  std::vector<int> slow;
  for (const char* from : {"127.0.0.2", "127.0.0.3"}) {
    int fd = ConnectFrom(server.port(), from);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, post_head(250 * 1024) + part));
    slow.push_back(fd);
  }
  ASSERT_TRUE(
      testing::WaitFor([&] { return server.body_bytes_held() == 2 * part.size(); }, 5s))
      << server.body_bytes_held() << " body bytes held";
  // A third large body does not fit: 503 at once, with Retry-After.
  auto start = std::chrono::steady_clock::now();
  auto refused = RawHttp(server.port(), post_head(250 * 1024) + std::string(250 * 1024, 'x'), 5s);
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.Json()["error"], "overloaded");
  EXPECT_EQ(refused.Header("retry-after"), "1");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  // Small requests still fit beside them.
  EXPECT_EQ(RawHttp(server.port(), post_head(5) + "small").status, 200);
  // A body that would not fit is not invited: 503 instead of 100 Continue.
  auto expect = RawHttp(server.port(),
                        "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                        "Content-Length: 256000\r\n\r\n",
                        5s, /*half_close=*/true);
  EXPECT_EQ(expect.status, 503) << expect.raw.substr(0, 200);
  EXPECT_EQ(expect.raw.find("100 Continue"), std::string::npos);
  // One slow client finishes: its answer comes, and its bytes are given back.
  ASSERT_TRUE(SendAll(slow[0], std::string(50 * 1024, 'e')));
  char c;
  ASSERT_GT(::recv(slow[0], &c, 1, 0), 0) << "the finished body was not answered";
  // The other goes away mid-body: its bytes are given back too.
  ::close(slow[1]);
  ::close(slow[0]);
  ASSERT_TRUE(testing::WaitFor([&] { return server.body_bytes_held() == 0; }, 5s))
      << server.body_bytes_held() << " body bytes still held";
  auto fits = RawHttp(server.port(), post_head(250 * 1024) + std::string(250 * 1024, 'y'), 5s);
  EXPECT_EQ(fits.status, 200);
  EXPECT_EQ(fits.body.size(), 250u * 1024);
  // And twice more: nothing leaked from the budget.
  auto again = RawHttp(server.port(), post_head(250 * 1024) + std::string(250 * 1024, 'z'), 5s);
  EXPECT_EQ(again.status, 200);
  // Bytes go back when the request is answered, not when the connection's
  // next request comes: two keep-alive connections left idle after their
  // answers hold nothing (they held 500 KiB until their idle timeout).
  std::vector<int> idle;
  for (int i = 0; i < 2; ++i) {
    int fd = ConnectFrom(server.port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 256000\r\n\r\n" +
                                std::string(256000, 'k')));
    std::string answer;
    char buf[65536];
    while (answer.size() < 256000) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      ASSERT_GT(n, 0);
      answer.append(buf, static_cast<std::size_t>(n));
    }
    idle.push_back(fd);
  }
  // Given back once each answer is sent (the idle timeout is 30 s).
  EXPECT_TRUE(testing::WaitFor([&] { return server.body_bytes_held() == 0; }, 5s))
      << server.body_bytes_held() << " body bytes held by idle connections";
  auto beside_idle = RawHttp(server.port(), post_head(250 * 1024) + std::string(250 * 1024, 'i'), 5s);
  EXPECT_EQ(beside_idle.status, 200);
  for (int fd : idle) ::close(fd);
}

// Defect 3: idle connections from one address took every descriptor.
// Now one address holds at most max_connections_per_address; others are
// still served.
TEST(HttpHardeningTest, OneAddressCannotTakeEveryConnection) {
  auto options = Options();
  options.max_connections = 40;
  options.max_connections_per_address = 8;
  options.reserved_connections = 4;
  Server server(EchoRouter(), options);
  ASSERT_TRUE(server.Start());
  std::vector<int> idle;
  for (int i = 0; i < 8; ++i) {
    int fd = ConnectFrom(server.port(), "127.0.0.2");
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  // The ninth from that address is refused with a clear answer...
  auto refused = Get(server.port(), "/echo", "127.0.0.2");
  EXPECT_EQ(refused.status, 429);
  EXPECT_EQ(refused.Json()["error"], "too_many_connections");
  EXPECT_FALSE(refused.Header("retry-after").empty());
  // ...while another client is served.
  EXPECT_EQ(Get(server.port(), "/echo", "127.0.0.1").status, 200);
  for (int fd : idle) ::close(fd);
}

// Near max_connections the last reserved_connections are a reserve: a
// connection there is served when busy connections leave room (idle ones
// never keep a request out, and the one idle the longest is closed), else
// only for /health and /metrics.
TEST(HttpHardeningTest, IdleConnectionsNeverKeepRequestsOut) {
  auto options = Options();
  options.max_connections = 12;
  options.max_connections_per_address = 12;
  options.reserved_connections = 4;
  Server server(EchoRouter(), options);
  ASSERT_TRUE(server.Start());
  std::vector<int> idle;
  for (int i = 0; i < 8; ++i) {  // the normal band, full of idle connections
    int fd = ConnectFrom(server.port(), ("127.0.0." + std::to_string(10 + i)).c_str());
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  for (int i = 0; i < 100 && server.open_connections() < 8; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(server.open_connections(), 8u);
  // A connection opened a moment ago: idle, but not the longest.
  int recent = ConnectFrom(server.port(), "127.0.0.20");
  ASSERT_GE(recent, 0);
  // Served although in the reserved band: every other connection is idle.
  EXPECT_EQ(Get(server.port(), "/echo", "127.0.0.30").status, 200);
  EXPECT_EQ(Get(server.port(), "/echo", "127.0.0.31").status, 200);
  // `recent` is checked now, not after the closes below: it is in the
  // reserved band, whose idle connections are closed after 1 s.
  EXPECT_FALSE(ClosedByServer(recent, 100ms));
  // Each closed the connection idle the longest (each I/O thread its own):
  // two of the first eight, never the recent one.
  std::size_t closed = 0;
  std::vector<bool> seen(idle.size(), false);
  for (auto until = std::chrono::steady_clock::now() + 3s;
       closed < 2 && std::chrono::steady_clock::now() < until;) {
    for (std::size_t i = 0; i < idle.size(); ++i) {
      if (!seen[i] && ClosedByServer(idle[i], 10ms)) seen[i] = true, ++closed;
    }
  }
  EXPECT_GE(closed, 2u);
  for (int fd : idle) ::close(fd);
  ::close(recent);
}

TEST(HttpHardeningTest, BusyServerKeepsHealthAndShedsTheRest) {
  auto options = Options();
  options.max_connections = 12;
  options.max_connections_per_address = 12;
  options.reserved_connections = 4;
  Server server(EchoRouter(), options);
  ASSERT_TRUE(server.Start());
  std::vector<int> busy;
  for (int i = 0; i < 8; ++i) {  // the normal band, each in the middle of a request
    int fd = ConnectFrom(server.port(), ("127.0.0." + std::to_string(10 + i)).c_str());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, "GET /echo HTTP/1.1\r\n"));
    busy.push_back(fd);
  }
  for (int i = 0; i < 100 && server.open_connections() < 8; ++i) std::this_thread::sleep_for(10ms);
  auto health = Get(server.port(), "/health", "127.0.0.30");
  EXPECT_EQ(health.status, 200);
  auto shed = Get(server.port(), "/echo", "127.0.0.31");
  EXPECT_EQ(shed.status, 503);
  EXPECT_EQ(shed.Json()["error"], "overloaded");
  EXPECT_FALSE(shed.Header("retry-after").empty());
  // A reserved slot is held for at most a second by a client that sends
  // nothing (or one byte), not for the whole request timeout.
  int silent = ConnectFrom(server.port(), "127.0.0.32");
  ASSERT_GE(silent, 0);
  EXPECT_TRUE(ClosedByServer(silent, 2500ms));
  ::close(silent);
  for (int fd : busy) ::close(fd);
}

// A HEAD answer carries no body (the next answer on the connection would
// start inside it).
TEST(HttpHardeningTest, HeadAnswersHaveNoBody) {
  Server server(EchoRouter(), Options());
  ASSERT_TRUE(server.Start());
  auto answer = RawHttp(server.port(),
                        "HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
                        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  // Two heads, the first without its body: the second status line follows
  // the first blank line at once.
  const auto first_end = answer.raw.find("\r\n\r\n");
  ASSERT_NE(first_end, std::string::npos);
  EXPECT_EQ(answer.raw.compare(first_end + 4, 9, "HTTP/1.1 "), 0) << answer.raw;
}

}  // namespace
}  // namespace disco::http
