// The first read of an answer (src/http/read_readiness.h): with the request
// still in the send batch, the Transport waits for the socket's next event
// instead of trying recv() first. These tests hold it to its safety
// argument with a server that closes pooled connections behind our back:
// closed outright while briefly idle (our request draws a reset: an event),
// and half-closed while idle for longer (no event ever comes; only the
// recv() tried at once sees the FIN, so a connection idle that long must
// not skip it). Either way the call goes to a fresh connection at once.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <optional>
#include <thread>
#include <vector>

#include "disco/detail/asio.h"
#include "disco/http/client.h"
#include "disco/http/server.h"
#include "disco/registry.h"

namespace disco::http {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace asio = boost::asio;

// A loopback HTTP/1.1 server of our own making, one thread, blocking
// sockets: connection i is handed to `script(*this, i, fd)` after it has
// been accepted; the script answers and closes as the test wants.
class ScriptedServer {
 public:
  using Script = std::function<void(ScriptedServer&, int, int)>;
  explicit ScriptedServer(Script script) : script_(std::move(script)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address);
    ::listen(listener_, 8);
    socklen_t length = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] {
      for (int i = 0;; ++i) {
        const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;  // the listener was shut down
        script_(*this, i, fd);
      }
    });
  }
  ~ScriptedServer() {
    stopping_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    for (auto& t : lingering_) t.join();
    ::close(listener_);
  }

  // A lingering close of `fd`: our sending side shut, the socket kept open,
  // what still comes read and dropped until the peer closes or we stop.
  void Linger(int fd) {
    ::shutdown(fd, SHUT_WR);
    lingering_.emplace_back([this, fd] {
      char buffer[4096];
      while (!stopping_ && ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT) != 0)
        std::this_thread::sleep_for(10ms);
      ::close(fd);
    });
  }
  std::uint16_t port() const { return port_; }

  // Reads one request head (no body) and answers it with "ok" + `index`,
  // keep-alive.
  static bool AnswerOne(int fd, int index) {
    std::string in;
    char buffer[4096];
    while (in.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) return false;
      in.append(buffer, static_cast<std::size_t>(n));
    }
    const std::string body = "ok" + std::to_string(index);
    const std::string answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\n\r\n" + body;
    return ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(answer.size());
  }

 private:
  Script script_;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> lingering_;  // touched by the accepting thread only
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

// Two calls on a one-thread io_context (so requests join the send batch),
// `pause` apart; the second call's answer and how long it took.
struct Second {
  Result<ClientResponse> response;
  Clock::duration took;
};
Second TwoCalls(Client& client, std::uint16_t port, Clock::duration pause) {
  asio::io_context ioc(1);
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/x";
  std::optional<Second> second;
  asio::co_spawn(
      ioc,
      [&]() -> Awaitable<void> {
        // Named requests: GCC 12 miscompiles a braced temporary in co_await.
        ClientRequest one{.url = url};
        auto first = co_await client.Send(std::move(one));
        EXPECT_TRUE(first && first->body == "ok0") << (first ? first->body : first.error().ToString());
        asio::steady_timer timer(co_await asio::this_coro::executor, pause);
        co_await timer.async_wait(use_awaitable);
        const auto started = Clock::now();
        ClientRequest two{.url = url};
        auto r = co_await client.Send(std::move(two));
        second.emplace(Second{std::move(r), Clock::now() - started});
      },
      asio::detached);
  ioc.run();
  return std::move(*second);
}

ClientOptions OneTry() {
  ClientOptions o;
  o.max_attempts = 1;  // a hang would show as a timeout, not be retried away
  o.per_try_timeout = 5s;
  o.outlier_detection = std::nullopt;
  return o;
}

#define REQUIRE_BATCHING()                                                             \
  do {                                                                                 \
    if (!SetSendBatching(true)) GTEST_SKIP() << "io_uring is refused on this machine"; \
  } while (0)

TEST(TransportFirstReadTest, APooledConnectionClosedWhileBrieflyIdleIsReplacedAtOnce) {
  REQUIRE_BATCHING();
  ScriptedServer server([](ScriptedServer&, int i, int fd) {
    if (i == 0) {
      ScriptedServer::AnswerOne(fd, 0);
      std::this_thread::sleep_for(30ms);  // idle in the client's pool
      ::close(fd);                        // FIN now; our next request draws a reset
      return;
    }
    ScriptedServer::AnswerOne(fd, i);
    ::close(fd);
  });
  auto registry = MakeRegistry("memory://transport-first-read-1");
  ASSERT_TRUE(registry);
  Client client(**registry, OneTry());
  const auto second = TwoCalls(client, server.port(), 100ms);  // under the 250 ms of a skip
  ASSERT_TRUE(second.response) << second.response.error().ToString();
  EXPECT_EQ(second.response->body, "ok1") << "answered on a fresh connection";
  EXPECT_LT(second.took, 1s);
}

TEST(TransportFirstReadTest, APooledConnectionHalfClosedWhileLongIdleIsReplacedAtOnce) {
  REQUIRE_BATCHING();
  ScriptedServer server([](ScriptedServer& self, int i, int fd) {
    if (i == 0) {
      ScriptedServer::AnswerOne(fd, 0);
      std::this_thread::sleep_for(30ms);
      // Our request reaching a lingering socket raises no event on our side.
      self.Linger(fd);
      return;
    }
    ScriptedServer::AnswerOne(fd, i);
    ::close(fd);
  });
  auto registry = MakeRegistry("memory://transport-first-read-2");
  ASSERT_TRUE(registry);
  Client client(**registry, OneTry());
  const auto second = TwoCalls(client, server.port(), 400ms);  // past the 250 ms of a skip
  ASSERT_TRUE(second.response) << second.response.error().ToString();
  EXPECT_EQ(second.response->body, "ok1") << "answered on a fresh connection";
  EXPECT_LT(second.took, 1s);
}

}  // namespace
}  // namespace disco::http
