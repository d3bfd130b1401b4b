// Server: the HTTP/1.1 server every disco service runs on.
//
// Boost.Beast with C++20 coroutines. N I/O threads, each running its own
// io_context (measured faster here than one io_context shared by N threads);
// one acceptor hands accepted sockets to the threads round-robin, so a
// connection lives on one thread for its whole life and its handlers never
// hop threads. (One acceptor instead of SO_REUSEPORT: a second process started
// by mistake on the same port then fails to bind instead of silently taking
// half the traffic.)
//
// Per request the server: enforces limits (body → 413, header block → 431,
// a chunk-size line or trailer section over header_limit → 400, slow or
// stalled request → 408 and close, bad syntax → 400) and RFC 9112's framing
// rules (an HTTP/1.1 request needs exactly one Host; a Transfer-Encoding
// other than "chunked" alone → 400, or 501 for a coding before chunked;
// Transfer-Encoding with Content-Length → 400), takes or makes
// the X-Request-Id (echoed in the response), names the instance that answered
// in X-Served-By (ServerOptions::instance_id, when set; a handler's own
// X-Served-By replaces it, so a proxy passes its upstream's on), routes (404 / 405 with Allow),
// runs the handler, writes one JSON-lines access-log entry through the spdlog
// logger named "access" (method, path without query, route, status, duration,
// request id, bytes; never headers or bodies) and records metrics by route
// pattern and status. GET /health and GET /metrics are built in unless the
// router defines them. Keep-alive as HTTP/1.1 says.
//
// Every error answer closes the connection; after one sent before the
// request was read whole (413, 400) the server reads and discards what the
// client still sends for a while (lingering close, as nginx does), so that a
// client still sending its body reads the answer instead of a reset.
//
// Connections are limited in all and per client address (max_connections,
// max_connections_per_address): past either limit a new connection gets a
// 503 (429 per address) and is closed (at a TLS port it is only closed:
// a TLS client cannot read a plaintext answer); near the limit the last
// reserved_connections serve only GET /health and GET /metrics, and each
// new connection closes the oldest idle keep-alive connection. An accept
// that fails for want of descriptors is logged at most once per 10 s.
//
// A handler that throws gets a 500 (that is a bug, and it is logged); a
// handler must turn every bad input into a 4xx itself.
//
// Shutdown (Drain): stop accepting, answer requests in progress (new requests
// on open connections are answered with "Connection: close"), close idle
// connections, wait up to the grace period, then stop the threads.
//
// Thread safety: Start, Drain and Stop are called from one controlling thread
// (typically main). port(), draining() and the counters may be read anywhere.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "disco/error.h"
#include "disco/http/router.h"

namespace disco {
class MetricsRegistry;
namespace tls {
class Config;
}  // namespace tls
}  // namespace disco

namespace disco::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;   // 0: any free port (see Server::port())
  std::size_t threads = 0;  // 0: UsableCores(): one per CPU, or per core of the CPU limit

  std::size_t body_limit = 1024 * 1024;  // larger bodies → 413
  std::size_t header_limit = 16 * 1024;  // larger header blocks → 431
  // Request bodies held at once, over all connections (each bounded by
  // body_limit; this bounds their sum). A request whose body bytes do not
  // fit → 503 with Retry-After: 1 and close. At least body_limit.
  std::size_t body_memory_limit = 256 * 1024 * 1024;
  // From the first byte of a request until it is fully read; slower → 408 and
  // close (slowloris). Also bounds each response write.
  std::chrono::milliseconds request_timeout{10'000};
  // How long an idle keep-alive connection is kept open.
  std::chrono::milliseconds idle_timeout{30'000};

  // Open client connections at most; 0: half the process's descriptor
  // limit (RLIMIT_NOFILE), the rest left for outgoing connections and
  // files, at most 16,384.
  std::size_t max_connections = 0;
  // From one client address at most; 0: a quarter of max_connections. (Set
  // it to max_connections where every client comes through one proxy.)
  std::size_t max_connections_per_address = 0;
  // The last connections below max_connections, kept for GET /health and
  // GET /metrics (at most half of max_connections).
  std::size_t reserved_connections = 16;

  // Shown by GET /health and used in logs; instance_id is also sent as the
  // X-Served-By response header.
  std::string service = "service";
  std::string instance_id{};

  bool access_log = true;
  MetricsRegistry* metrics = nullptr;  // nullptr: MetricsRegistry::Default()

  // HTTPS (a tls::Config of Role::kServer; null: plain HTTP). Each
  // connection takes the config's settings in force when it is accepted, so
  // a Reload() changes the certificate for new connections only. The
  // handshake is bounded by request_timeout (in the reserved band by the
  // band's 1 s); until its first byte a connection counts as idle, and is
  // closed first to make room. Plain HTTP sent to the port is answered 400
  // (tls_required).
  std::shared_ptr<tls::Config> tls{};
};

// Sends in batches (on by default): on an io_context run by one thread (a
// concurrency hint of 1, as Server's I/O threads have), a plain HTTP
// message of up to 8 KiB that is followed by a read (a keep-alive answer, a
// client's request) is handed to the kernel with the other sends of the same
// turn of the event loop, in one io_uring_enter, instead of one sendmsg
// each. Off, or where io_uring is unavailable (an old kernel, a seccomp
// profile, kernel.io_uring_disabled), each is sent at once. Process-wide;
// an io_context decides when it first sends, so set it before servers and
// clients start. Returns whether sends will be batched: false when off or
// when this kernel refuses io_uring.
bool SetSendBatching(bool on);

// The CPU limit this process runs under, in cores: a cgroup's CPU quota
// (cgroup v2's cpu.max, v1's cpu.cfs_quota_us; a Kubernetes CPU limit,
// systemd's CPUQuota=, docker --cpus), the smallest on the path from its
// cgroup to the root of the hierarchy it can see; nullopt when none
// applies. Read from the cgroup files at each call (blocking file reads:
// not for an event loop).
//
// When the process's own cgroup sets one, busy I/O threads read their CPU
// clock after a turn's sends, at most every 200 µs, so that the kernel
// checks the quota then rather than at its next tick: a loop that never
// sleeps otherwise overruns the quota by up to a tick (4 ms at HZ=250) and
// is then throttled as much longer (src/http/cpu_limit.h; docs/benchmarks.md).
std::optional<double> CpuLimitCores();

// The cores this process can use: the CPUs its affinity allows, or the CPU
// limit rounded up when that is fewer (as the JVM counts them). The default
// number of I/O threads. Blocking file reads, as CpuLimitCores.
std::size_t UsableCores();

class Server {
 public:
  Server(Router router, ServerOptions options);
  ~Server();  // Stop()s if still running
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds, listens and starts the I/O threads; returns once connections are
  // accepted. Errors: kUnavailable (cannot bind), kInvalidArgument (bad host).
  Result<void> Start();

  // The bound port (useful when options.port was 0). REQUIRES: Start() succeeded.
  std::uint16_t port() const;
  // The I/O threads it runs (ServerOptions::threads, or what 0 chose).
  std::size_t threads() const;

  // Stops accepting, lets requests in progress finish (new requests on open
  // connections are still answered, with "Connection: close"), closes idle
  // connections, and waits until all connections are closed or `grace`
  // passed; then stops the I/O threads. Returns true when every connection
  // finished within `grace`.
  bool Drain(std::chrono::milliseconds grace);
  // Drain(0).
  void Stop();

  bool draining() const;
  std::uint64_t open_connections() const;
  // Connections admitted since Start (those refused at accept not counted):
  // against requests answered, it shows how well callers reuse them.
  std::uint64_t accepted_connections() const;
  std::uint64_t requests_in_flight() const;
  // Request body bytes held now, from any thread (a snapshot): bytes of
  // bodies still arriving and of requests not yet answered, taken as they
  // arrive and given back when the answer is written or the connection
  // ends. Bounded by max(body_memory_limit, body_limit).
  std::size_t body_bytes_held() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace disco::http
