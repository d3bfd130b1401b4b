// The first read of an answer (src/http/read_readiness.h): with the request
// still in the send batch, on a pooled connection nothing came for while it
// was idle, the Transport waits for the socket's next event instead of
// trying recv() first. These tests show that it does, and hold it to its
// safety rule with a server that closes pooled connections behind our
// back: closed, reset, or half-closed and kept open (a lingering close,
// which raises no event when our request reaches it). Each close raised an
// event while the connection was pooled, so the read tries recv() at once,
// sees the close, and the call goes to a fresh connection at once.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "disco/detail/asio.h"
#include "disco/http/client.h"
#include "disco/http/server.h"
#include "disco/registry.h"
#include "http/read_readiness.h"

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
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener_, 8) != 0)
      throw std::runtime_error("ScriptedServer: cannot listen on loopback");
    socklen_t length = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] {
      for (int i = 0;; ++i) {
        const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
          if (stopping_) return;  // the listener was shut down
          --i;
          continue;
        }
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
  // Whether a script said it ended connection 0 (MarkEnded()).
  bool ended() const { return ended_; }
  void MarkEnded() { ended_ = true; }

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
  std::atomic<bool> ended_{false};
  std::vector<std::thread> lingering_;  // touched by the accepting thread only
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

// Two calls on a one-thread io_context (so requests join the send batch),
// `pause` apart, and after `ready()` holds (checked every 5 ms, for at most
// 5 s); the second call's answer and how long it took.
struct Second {
  Result<ClientResponse> response;
  Clock::duration took;
};
Second TwoCalls(Client& client, std::uint16_t port, Clock::duration pause,
                std::function<bool()> ready = [] { return true; }) {
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
        asio::steady_timer timer(co_await asio::this_coro::executor);
        for (const auto until = Clock::now() + 5s; !ready() && Clock::now() < until;) {
          timer.expires_after(5ms);
          co_await timer.async_wait(use_awaitable);
        }
        timer.expires_after(pause);
        co_await timer.async_wait(use_awaitable);
        const auto started = Clock::now();
        ClientRequest two{.url = url};
        auto r = co_await client.Send(std::move(two));
        second.emplace(Second{std::move(r), Clock::now() - started});
      },
      asio::detached);
  ioc.run();
  if (!second) return {std::unexpected(Error{ErrorCode::kInternal, "the calls did not finish"}), {}};
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

// A server that keeps its connections: the second call's first read skips
// the recv() that cannot succeed, and its answer still arrives.
TEST(TransportFirstReadTest, AQuietPooledConnectionWaitsForTheAnswersEvent) {
  REQUIRE_BATCHING();
  ScriptedServer server([](ScriptedServer&, int i, int fd) {
    for (int n = i; ScriptedServer::AnswerOne(fd, n); ++n) {
    }
    ::close(fd);
  });
  auto registry = MakeRegistry("memory://transport-first-read-0");
  ASSERT_TRUE(registry);
  Client client(**registry, OneTry());
  const auto skipped = detail::SkippedFirstReceives();
  const auto second = TwoCalls(client, server.port(), 50ms);
  ASSERT_TRUE(second.response) << second.response.error().ToString();
  EXPECT_EQ(second.response->body, "ok1") << "answered on the pooled connection";
  EXPECT_EQ(detail::SkippedFirstReceives() - skipped, 1u)
      << "the second call's read, on a quiet pooled connection (not the first's: fresh)";
  EXPECT_LT(second.took, 1s);
}

// How the server ends connection 0 while it is pooled in the client.
enum class End { kClose, kReset, kLinger };

void ExpectAFreshConnectionAtOnce(End end, const std::string& name) {
  ScriptedServer server([end](ScriptedServer& self, int i, int fd) {
    ScriptedServer::AnswerOne(fd, i);
    if (i != 0) {
      ::close(fd);
      return;
    }
    std::this_thread::sleep_for(30ms);  // idle in the client's pool
    switch (end) {
      case End::kClose:
        ::close(fd);  // FIN; our request then draws a reset
        self.MarkEnded();
        break;
      case End::kReset: {
        const linger abort{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
        ::close(fd);  // RST
        self.MarkEnded();
        break;
      }
      case End::kLinger:
        self.Linger(fd);  // FIN, and our request reaching it raises nothing
        self.MarkEnded();
        break;
    }
  });
  auto registry = MakeRegistry("memory://transport-first-read-" + name);
  ASSERT_TRUE(registry);
  Client client(**registry, OneTry());
  const auto skipped = detail::SkippedFirstReceives();
  // The second call starts 50 ms after the server ended connection 0, so
  // that the close has reached the client's socket (loopback) and its event
  // the client's loop, however loaded the machine.
  const auto second = TwoCalls(client, server.port(), 50ms, [&] { return server.ended(); });
  ASSERT_TRUE(second.response) << second.response.error().ToString();
  EXPECT_EQ(second.response->body, "ok1") << "answered on a fresh connection";
  EXPECT_LT(second.took, 1s);
  EXPECT_EQ(detail::SkippedFirstReceives(), skipped)
      << "the close raised an event while pooled: the read tries recv() at once";
}

TEST(TransportFirstReadTest, APooledConnectionClosedWhileIdleIsReplacedAtOnce) {
  REQUIRE_BATCHING();
  ExpectAFreshConnectionAtOnce(End::kClose, "close");
}

TEST(TransportFirstReadTest, APooledConnectionResetWhileIdleIsReplacedAtOnce) {
  REQUIRE_BATCHING();
  ExpectAFreshConnectionAtOnce(End::kReset, "reset");
}

TEST(TransportFirstReadTest, APooledConnectionLingeringClosedWhileIdleIsReplacedAtOnce) {
  REQUIRE_BATCHING();
  ExpectAFreshConnectionAtOnce(End::kLinger, "linger");
}

}  // namespace
}  // namespace disco::http
