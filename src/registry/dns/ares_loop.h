// One c-ares channel and the thread that drives it: polls the channel's
// sockets (poll(2), not select: descriptors above FD_SETSIZE are fine), runs
// c-ares's timeouts and retries (TCP after a truncated answer included), and
// runs tasks and timers posted from other threads. Every query callback,
// task and timer runs on this one thread, so the lookups and watches built
// on it need no locks of their own.
//
// Thread safety: Post and OnLoopThread from any thread; After and Query only
// on the loop thread. Owned (through Threads, dns_watch.h) by the registry and
// its watches (a watch may outlive its registry); the last owner stops the
// thread, and c-ares then fails the queries still in flight
// (ARES_EDESTRUCTION) on it. Watch callbacks do not run here.
#pragma once

#include <ares.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "disco/error.h"
#include "registry/dns/dns_config.h"

namespace disco::dns {

class AresLoop {
 public:
  using Clock = std::chrono::steady_clock;
  // c-ares status and, on ARES_SUCCESS, the raw answer.
  using QueryCallback = std::function<void(int status, std::span<const unsigned char> answer)>;

  // Errors: kInvalidArgument when c-ares refuses the servers or resolv.conf.
  static Result<std::shared_ptr<AresLoop>> Make(const DnsConfig& config);
  ~AresLoop();
  AresLoop(const AresLoop&) = delete;
  AresLoop& operator=(const AresLoop&) = delete;

  // Runs `task` on the loop thread. False when the queue is full (the loop
  // is far behind) or stopping; the task is then dropped.
  bool Post(std::function<void()> task);
  // Runs `task` on the loop thread after `delay`. Loop thread only.
  void After(std::chrono::milliseconds delay, std::function<void()> task);
  bool OnLoopThread() const { return std::this_thread::get_id() == thread_.get_id(); }

  // ares_search (search domains and ndots applied) or, with `absolute`,
  // ares_query of exactly `name`. Loop thread only.
  void Query(const std::string& name, int type, bool absolute, QueryCallback done);

 private:
  AresLoop() = default;
  void Run();
  static void OnSocketState(void* data, ares_socket_t fd, int readable, int writable);

  static constexpr std::size_t kMaxQueued = 4096;

  ares_channel channel_ = nullptr;
  int wake_fd_ = -1;  // eventfd: Post and the destructor wake poll()
  std::map<ares_socket_t, short> sockets_;  // loop thread only
  std::multimap<Clock::time_point, std::function<void()>> timers_;  // loop thread only

  std::mutex mu_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_, at most kMaxQueued
  bool stopping_ = false;                    // guarded by mu_
  std::thread thread_;
};

// "NXDOMAIN: ..." etc.: an ErrorCode and message for a failed c-ares status.
Error AresError(int status, const std::string& name);

}  // namespace disco::dns
