// A service out of file descriptors (issue 12, defect 3): idle connections
// from clients took every descriptor, every accept failed, new clients
// waited in the listen backlog until they gave up, and the log got one
// "Too many open files" line every 50 ms. Now a failed accept closes one
// waiting connection through a descriptor held in reserve (the client
// learns at once), the failure is logged at most once per 10 s, and the
// service serves again as soon as descriptors are free.
//
// The real user-service binary under `prlimit --nofile=96`, with its
// connection limits set above that, so that the descriptors run out first.
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

#include "fixture/http_client.h"
#include "fixture/service_process.h"
#include "fixture/util.h"

namespace disco {
namespace {

using namespace std::chrono_literals;
using testing::HttpRequest;

int Connect(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::size_t Count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(DescriptorExhaustionTest, NewClientsAreClosedAtOnceAndTheLogStaysQuiet) {
#ifdef DISCO_UBSAN_VPTR
  // UBSan (GCC 12's libubsan) checks a virtual call on a type it has not
  // cached by writing the vtable into a pipe() to learn whether the memory
  // is readable. With every descriptor taken the pipe cannot be made, the
  // check calls a valid boost::system::error_category invalid, and
  // -fno-sanitize-recover ends the service: a fault of the tool in exactly
  // the state this test creates. The default build runs the test.
  GTEST_SKIP() << "UBSan's vptr check needs free descriptors (it opens a pipe)";
#endif
  testing::TempDir dir("disco-fds");
  testing::ServiceOptions options;
  options.binary = testing::UserServicePath();
  options.registry = "memory://";
  options.db = dir.Sub("users.db");
  options.log_path = dir.Sub("user.log");
  options.launcher = {"prlimit", "--nofile=96", "--"};
  options.args = {"--bcrypt-cost",
                  "4",
                  "--access-log",
                  "false",
                  "--max-connections",
                  "1000",
                  "--max-connections-per-address",
                  "1000"};
  testing::ServiceProcess service(options);

  // Idle connections until the service can accept no more.
  std::vector<int> idle;
  for (int i = 0; i < 150; ++i) {
    int fd = Connect(service.port());
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  std::this_thread::sleep_for(500ms);
  // Past the descriptors: a new client is closed within a second instead
  // of waiting in the backlog (the old server left it there).
  for (int i = 0; i < 5; ++i) {
    int fd = Connect(service.port());
    ASSERT_GE(fd, 0);
    const std::string request = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    [[maybe_unused]] auto sent = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    pollfd p{fd, POLLIN, 0};
    const auto start = std::chrono::steady_clock::now();
    const int ready = ::poll(&p, 1, 3000);
    EXPECT_EQ(ready, 1) << "client " << i << " still waits after 3 s";
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
    ::close(fd);
  }
  std::this_thread::sleep_for(1s);
  // Over these seconds of failing accepts: one log line, not one per 50 ms.
  const std::string log = service.ReadLog();
  EXPECT_GE(Count(log, "accept failed"), 1u);
  EXPECT_LE(Count(log, "accept failed"), 2u) << log.substr(0, 2000);

  for (int fd : idle) ::close(fd);
  // Descriptors free again: served as before.
  int status = 0;
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        status = HttpRequest(service.port(), "GET", "/health", {}, {}, 1s).status;
        return status == 200;
      },
      10s, 50ms))
      << "last status " << status << ", service running: " << service.running() << "\n"
      << service.ReadLog().substr(0, 4000);
}

}  // namespace
}  // namespace disco
