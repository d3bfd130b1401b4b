// login_flood: the login flood of issue 12, as a load generator.
//
//   login_flood --port GATEWAY_PORT --user alice --password secret
//               [--health NAME=PORT]... [--duration-s 20] [--flood-concurrency 50]
//               [--flood-sources 1] [--legit-interval-ms 500] [--timeout-ms 15000]
//
// Three kinds of client, each from its own loopback address (Linux routes
// all of 127.0.0.0/8 to lo), so that the gateway and user-service tell them
// apart as they would tell apart hosts:
//   - the flood: --flood-concurrency workers, closed loop, each sending
//     POST /api/users/login with a wrong password for --user as soon as its
//     previous one was answered, from 127.0.1.1 .. 127.0.1.<flood-sources>;
//   - a legitimate client (127.0.2.1): a login with the right password every
//     --legit-interval-ms, one at a time;
//   - probes (127.0.3.1): GET /health on each --health port every 20 ms,
//     reported as health_<NAME>.
// --flood-concurrency 0: no flood; --legit-interval-ms 0: no legitimate
// client; no --health: no probes (so that the flood can run in a process of
// its own, e.g. at a lower priority than the one that measures).
// One request per connection ("Connection: close"), each bounded by
// --timeout-ms. The flood and the probes start together; the legitimate
// client starts 1 s later (the flood is established) and stops 1 s early.
//
// Prints one JSON object: per kind, the answers by status (0: no answer
// within the timeout or connection failed), latency percentiles in ms, and
// for the flood its rate; for refusals (429, 503) whether each carried
// Retry-After.
//
// Standalone (plain sockets and threads), so that it builds and behaves the
// same against any version of the services.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Answer {
  int status = 0;
  bool retry_after = false;
  double ms = 0;
};

Answer Exchange(const std::string& source, int port, const std::string& request, int timeout_ms) {
  Answer answer;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(timeout_ms);
  auto left = [&] {
    return static_cast<int>(std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()));
  };
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd >= 0) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    inet_pton(AF_INET, source.c_str(), &local.sin_addr);
    sockaddr_in remote{};
    remote.sin_family = AF_INET;
    remote.sin_port = htons(static_cast<std::uint16_t>(port));
    remote.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    bool ok = bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) == 0;
    if (ok && connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof remote) != 0) {
      pollfd p{fd, POLLOUT, 0};
      ok = errno == EINPROGRESS && poll(&p, 1, left()) == 1;
      int error = 0;
      socklen_t len = sizeof error;
      ok = ok && getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0;
    }
    std::size_t sent = 0;
    while (ok && sent < request.size()) {
      ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
        continue;
      }
      pollfd p{fd, POLLOUT, 0};
      ok = n < 0 && errno == EAGAIN && poll(&p, 1, left()) == 1;
    }
    std::string raw;
    char buf[4096];
    while (ok) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        raw.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0) break;
      pollfd p{fd, POLLIN, 0};
      ok = errno == EAGAIN && poll(&p, 1, left()) == 1;
    }
    close(fd);
    if (raw.starts_with("HTTP/1.") && raw.size() > 12) {
      answer.status = std::atoi(raw.c_str() + 9);
      auto head = raw.substr(0, raw.find("\r\n\r\n"));
      std::transform(head.begin(), head.end(), head.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      answer.retry_after = head.find("\r\nretry-after:") != std::string::npos;
    }
  }
  answer.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  return answer;
}

std::string Login(int port, const std::string& user, const std::string& password) {
  std::string body = "{\"username\":\"" + user + "\",\"password\":\"" + password + "\"}";
  return "POST /api/users/login HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// The answers of one kind of client.
struct Tally {
  std::mutex mu;
  std::vector<Answer> answers;
  void Add(const Answer& a) {
    std::lock_guard lock(mu);
    answers.push_back(a);
  }
  std::string Json(double seconds) {
    std::lock_guard lock(mu);
    std::map<int, int> by_status;
    std::size_t refusals = 0, with_retry_after = 0;
    std::vector<double> ms;
    std::vector<double> refusal_ms;
    for (const auto& a : answers) {
      ++by_status[a.status];
      ms.push_back(a.ms);
      if (a.status == 429 || a.status == 503) {
        ++refusals;
        refusal_ms.push_back(a.ms);
        if (a.retry_after) ++with_retry_after;
      }
    }
    auto pct = [](std::vector<double> v, double p) {
      if (v.empty()) return 0.0;
      std::sort(v.begin(), v.end());
      return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
    };
    std::string out = "{\"requests\":" + std::to_string(answers.size()) + ",\"status\":{";
    bool first = true;
    for (auto [status, n] : by_status) {
      out += (first ? "\"" : ",\"") + std::to_string(status) + "\":" + std::to_string(n);
      first = false;
    }
    char tail[512];
    std::snprintf(tail, sizeof tail,
                  "},\"rate\":%.1f,\"p50_ms\":%.1f,\"p99_ms\":%.1f,\"max_ms\":%.1f,"
                  "\"refusals\":%zu,\"refusals_with_retry_after\":%zu,\"refusal_p99_ms\":%.1f}",
                  seconds > 0 ? static_cast<double>(answers.size()) / seconds : 0.0, pct(ms, 0.5),
                  pct(ms, 0.99), pct(ms, 1.0), refusals, with_retry_after, pct(refusal_ms, 0.99));
    return out + tail;
  }
};

}  // namespace

int main(int argc, char** argv) {
  int port = 0, duration_s = 20, concurrency = 50, sources = 1, legit_interval_ms = 500;
  int timeout_ms = 15000;
  std::string user, password;
  std::vector<int> health_ports;
  std::vector<std::string> health_names;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--port")
      port = std::atoi(value.c_str());
    else if (flag == "--user")
      user = value;
    else if (flag == "--password")
      password = value;
    else if (flag == "--health" && value.find('=') != std::string::npos) {
      health_names.push_back(value.substr(0, value.find('=')));
      health_ports.push_back(std::atoi(value.c_str() + value.find('=') + 1));
    } else if (flag == "--duration-s")
      duration_s = std::atoi(value.c_str());
    else if (flag == "--flood-concurrency")
      concurrency = std::atoi(value.c_str());
    else if (flag == "--flood-sources")
      sources = std::clamp(std::atoi(value.c_str()), 1, 250);
    else if (flag == "--legit-interval-ms")
      legit_interval_ms = std::atoi(value.c_str());
    else if (flag == "--timeout-ms")
      timeout_ms = std::atoi(value.c_str());
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (port <= 0 || user.empty() || password.empty() || duration_s < 3) {
    std::fprintf(stderr,
                 "usage: login_flood --port P --user U --password PW [--health NAME=PORT]... "
                 "[--duration-s S>=3] [--flood-concurrency N] [--flood-sources N] "
                 "[--legit-interval-ms MS] [--timeout-ms MS]\n");
    return 2;
  }

  const auto start = Clock::now();
  const auto end = start + std::chrono::seconds(duration_s);
  Tally flood, legit;
  std::vector<std::unique_ptr<Tally>> health;
  for (std::size_t i = 0; i < health_ports.size(); ++i) health.push_back(std::make_unique<Tally>());
  std::vector<std::thread> threads;
  const std::string wrong = Login(port, user, password + "-wrong");
  const std::string right = Login(port, user, password);
  for (int i = 0; i < concurrency; ++i) {
    std::string source = "127.0.1." + std::to_string(1 + i % sources);
    threads.emplace_back([&, source] {
      while (Clock::now() < end) flood.Add(Exchange(source, port, wrong, timeout_ms));
    });
  }
  if (legit_interval_ms > 0)
    threads.emplace_back([&] {
      std::this_thread::sleep_until(start + std::chrono::seconds(1));
      while (Clock::now() < end - std::chrono::seconds(1)) {
        auto next = Clock::now() + std::chrono::milliseconds(legit_interval_ms);
        legit.Add(Exchange("127.0.2.1", port, right, timeout_ms));
        std::this_thread::sleep_until(next);
      }
    });
  for (std::size_t i = 0; i < health_ports.size(); ++i) {
    threads.emplace_back([&, i] {
      const std::string request =
          "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
      while (Clock::now() < end) {
        auto next = Clock::now() + std::chrono::milliseconds(20);
        health[i]->Add(Exchange("127.0.3.1", health_ports[i], request, timeout_ms));
        std::this_thread::sleep_until(next);
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::string out = "{\"seconds\":" + std::to_string(seconds) +
                    ",\"flood\":" + flood.Json(seconds) + ",\"legit\":" + legit.Json(0);
  for (std::size_t i = 0; i < health_ports.size(); ++i) {
    out += ",\"health_" + health_names[i] + "\":" + health[i]->Json(0);
  }
  std::printf("%s}\n", out.c_str());
  return 0;
}
