// RedisClient: a small asynchronous Redis client for the services' shared
// state (gateway rate limits, token revocations), on its own Asio thread.
//
// One TCP connection, pipelined: commands from every I/O thread are queued
// on the client's thread, written in batches and answered in order. A call
// never blocks its caller's event loop and never waits long:
//   - refused at once (kUnavailable) while disconnected or when
//     `max_in_flight` calls are already waiting;
//   - failed with kTimeout when its reply has not come within `timeout`
//     (the reply, if it comes later, is read and dropped, so the pipeline
//     stays in step);
//   - a connection whose oldest reply is `stall_limit` late is closed and
//     reconnected (Redis hung, or a network that swallows packets).
// Lost connections are retried with exponential backoff (50 ms … 2 s, with
// jitter). The log gets one line per change of state (connected / lost),
// never one per call; the password never appears in it.
//
// A Redis error reply ("-ERR ...") is a successful call whose Reply is of
// type kError: callers decide what it means. Eval() runs a Lua script by its
// SHA1 (EVALSHA) and falls back to EVAL once when Redis answers NOSCRIPT (a
// restarted or flushed server), which loads it again.
//
// Thread safety: Call, Eval and connected() may be used from any thread or
// coroutine. The client must outlive every call in progress; destroying it
// fails the calls still waiting (kCancelled) and joins its thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "disco/http/awaitable.h"
#include "redis_resp.h"
#include "redis_url.h"

namespace disco::service::redis {

struct ClientOptions {
  RedisUrl url;
  std::chrono::milliseconds timeout{5};         // per call, from the call to its reply
  std::size_t max_in_flight = 1024;             // calls queued or awaiting a reply
  std::chrono::milliseconds stall_limit{1000};  // a reply this late resets the connection
  std::string purpose = "redis";                // the log's name for this client
};

// A Lua script, its SHA1 computed once.
class Script {
 public:
  explicit Script(std::string source);
  const std::string& source() const { return source_; }
  const std::string& sha1() const { return sha1_; }

 private:
  std::string source_;
  std::string sha1_;
};

struct ClientStats {
  std::uint64_t calls = 0;
  std::uint64_t failed = 0;  // refused, timed out or lost with the connection
};

class Client {
 public:
  // Starts the client's thread and its first connection attempt; returns at
  // once (Redis may be down: calls fail until it is reachable).
  explicit Client(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Errors: kUnavailable (not connected, too many in flight, connection
  // lost), kTimeout, kCancelled (client destroyed).
  http::Awaitable<Result<Reply>> Call(std::vector<std::string> args);

  // EVALSHA sha numkeys keys... args..., then EVAL on NOSCRIPT.
  http::Awaitable<Result<Reply>> Eval(const Script& script, std::vector<std::string> keys,
                                      std::vector<std::string> args);

  // Connected and authenticated now (a hint: it may change at any moment).
  bool connected() const { return connected_.load(std::memory_order_relaxed); }
  // Waits (blocking; tests and start-up only) up to `timeout` for connected().
  bool WaitConnected(std::chrono::milliseconds timeout) const;
  ClientStats stats() const;
  const ClientOptions& options() const { return options_; }

 private:
  struct Impl;
  const ClientOptions options_;
  std::atomic<bool> connected_{false};
  std::atomic<std::size_t> in_flight_{0};
  std::atomic<std::uint64_t> calls_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::shared_ptr<Impl> impl_;
};

}  // namespace disco::service::redis
