// The engine shared by one Consul registry and every handle made from it.
//
// Threading contract of the whole backend:
// - One I/O thread per registry runs an io_context. All network I/O, every
//   registration's heartbeat loop and every watch's blocking-query loop are
//   coroutines on it; the HttpClient and all per-task I/O state are touched
//   only there, so none of it needs a lock.
// - One delivery thread per registry runs the watch callbacks, in order, one
//   at a time. Callbacks therefore never stall heartbeats, and a callback may
//   call the registry's blocking methods (List, Register...) without
//   deadlocking the I/O thread.
// - Public methods (on any user thread) post work to the I/O thread and wait
//   for it with a bound (Call below); they never touch I/O state directly.
// - Registry, Registration and WatchHandle each hold a shared_ptr<Core>; the
//   Core stops and joins its threads when the last of them is gone, after
//   cancelling whatever still runs. Coroutines hold only a raw Core*, valid
//   because the destructor joins the I/O thread before anything is freed.
#pragma once

#include "disco/tls.h"

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "disco/detail/asio.h"
#include "disco/registry.h"
#include "disco/registry_url.h"
#include "registry/consul/consul_http.h"

namespace disco::consul {

struct Config {
  // Agent addresses, in order of preference: the first is the local agent
  // registrations go to; the others take over when it fails.
  std::vector<HostPort> agents;
  std::string dc;                 // ?dc= on discovery reads; empty: the agent's own
  std::vector<std::string> tags;  // discovery keeps instances carrying all of them
  std::string token;              // X-Consul-Token; never logged
  std::string url;                // redacted, for messages
  bool stale = false;             // ?stale on discovery reads
  std::chrono::seconds wait{30};  // blocking-query wait
  std::chrono::milliseconds request_timeout{3000};
  std::chrono::milliseconds connect_timeout{2000};
  std::shared_ptr<tls::Config> tls;  // HTTPS to the agent (registry_tls.h); null: HTTP
};

// Reads the consul:// URL: agent addresses, token (URL, else env
// DISCO_CONSUL_TOKEN), stale=1, wait=30s, dc=NAME, tag=T (comma list; a
// repeated parameter arrives joined by commas). Errors: kInvalidArgument
// naming an unknown parameter or a bad value.
Result<Config> ParseConfig(const RegistryUrl& url, const RegistryOptions& options);

class Core {
 public:
  explicit Core(Config config);
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  const Config& config() const { return config_; }
  boost::asio::io_context& io() { return io_; }
  HttpClient& client() { return client_; }  // I/O thread only

  // Discovery reads go to one agent at a time, shared by every watch and
  // List so that they all move together: DiscoveryAgent() is the one to ask,
  // DiscoveryFailed(a) moves on to the next agent if `a` is still the one
  // (a retryable failure: no answer, a hung agent past its deadline, 5xx).
  // I/O thread only.
  std::size_t agents() const { return config_.agents.size(); }
  std::size_t DiscoveryAgent() const { return discovery_agent_; }
  void DiscoveryFailed(std::size_t agent);

  // Starts a background coroutine (a heartbeat or watch loop) on the I/O
  // thread. Any thread.
  void Spawn(boost::asio::awaitable<void> task);

  // Runs `fn` on the delivery thread, after every function posted before it.
  void Deliver(std::function<void()> fn);
  bool OnDeliveryThread() const { return std::this_thread::get_id() == delivery_id_; }

  // Runs the coroutine `task` (an awaitable<Result<T>>) on the I/O thread and
  // waits for its result up to `bound`. Errors: the task's own, or kTimeout
  // if it did not finish in time (it keeps running; its own timeouts end it).
  // REQUIRES: not called on the I/O thread.
  template <class T>
  Result<T> Call(boost::asio::awaitable<Result<T>> task, std::chrono::milliseconds bound);

 private:
  const Config config_;
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  HttpClient client_;
  std::size_t discovery_agent_ = 0;  // I/O thread only
  std::thread io_thread_;

  // The delivery context is shared with its thread, so that the thread can
  // outlive this Core when the last handle is dropped inside a callback.
  std::shared_ptr<boost::asio::io_context> delivery_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
      delivery_work_;
  std::thread delivery_thread_;
  std::thread::id delivery_id_;
};

template <class T>
Result<T> Core::Call(boost::asio::awaitable<Result<T>> task, std::chrono::milliseconds bound) {
  auto promise = std::make_shared<std::promise<Result<T>>>();
  auto future = promise->get_future();
  boost::asio::co_spawn(
      io_, std::move(task), [promise](std::exception_ptr error, Result<T> result) {
        if (error) {
          promise->set_value(Fail(ErrorCode::kInternal, "consul backend: unexpected exception"));
        } else {
          promise->set_value(std::move(result));
        }
      });
  if (future.wait_for(bound) != std::future_status::ready) {
    return Fail(ErrorCode::kTimeout,
                config_.url + ": no answer within " + std::to_string(bound.count()) + " ms");
  }
  return future.get();
}

// Whether a failure of one agent is worth trying another agent for: no
// answer (refused, reset, hung past its deadline) or a 5xx. A 4xx (ACL, bad
// request, unknown datacenter) would be the same on every agent.
inline bool AgentFailure(const Error& error) {
  return error.code == ErrorCode::kUnavailable || error.code == ErrorCode::kTimeout;
}

}  // namespace disco::consul
