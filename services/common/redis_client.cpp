#include "redis_client.h"

#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <deque>
#include <functional>
#include <random>
#include <thread>

#include "disco/detail/asio.h"
#include "logging.h"

namespace disco::service::redis {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

Script::Script(std::string source) : source_(std::move(source)) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(source_.data()), source_.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char b : digest) {
    sha1_ += kHex[b >> 4];
    sha1_ += kHex[b & 15];
  }
}

namespace {

using Completion = std::move_only_function<void(Result<Reply>)>;

// A command written (or about to be) whose reply has not been read yet.
struct Pending {
  Clock::time_point sent;
  Clock::time_point deadline;
  Completion done;  // empty once answered by the timer (the reply is then dropped)
};

// One TCP connection and its buffers. Handlers hold it by shared_ptr, so a
// buffer outlives any operation still using it after a reconnect; a handler
// whose connection is no longer the current one does nothing.
struct Connection {
  explicit Connection(asio::io_context& io) : socket(io) {}
  tcp::socket socket;
  std::string out;  // encoded, not yet handed to a write
  bool writing = false;
  std::string in;  // read, not yet parsed
  std::array<char, 16 * 1024> chunk{};
};

constexpr std::size_t kMaxBufferedBytes = 4 * 1024 * 1024;
constexpr auto kFirstBackoff = std::chrono::milliseconds(50);
constexpr auto kMaxBackoff = std::chrono::milliseconds(2000);

}  // namespace

struct Client::Impl : std::enable_shared_from_this<Impl> {
  Impl(Client& c, const ClientOptions& o)
      : owner(c),
        options(o),
        resolver(io),
        timer(io),
        retry_timer(io),
        random(std::random_device{}()) {}

  Client& owner;
  const ClientOptions& options;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  tcp::resolver resolver;
  asio::steady_timer timer;        // call deadlines and the stall limit
  asio::steady_timer retry_timer;  // reconnect backoff
  std::thread thread;
  std::minstd_rand random;

  // Everything below: the client's thread only.
  std::shared_ptr<Connection> conn;
  bool up = false;             // handshake done
  bool reported_down = false;  // the last state logged was "unreachable"
  bool stopping = false;
  std::deque<Pending> pending;
  bool timer_armed = false;
  Clock::time_point timer_at{};
  std::chrono::milliseconds backoff = kFirstBackoff;

  std::string Name() const { return options.purpose + " " + options.url.Redacted(); }

  void Connect() {
    if (stopping) return;
    auto c = std::make_shared<Connection>(io);
    conn = c;
    resolver.async_resolve(options.url.host, std::to_string(options.url.port),
                           [self = shared_from_this(), c](boost::system::error_code ec,
                                                          tcp::resolver::results_type results) {
                             if (c != self->conn) return;
                             if (ec) return self->Lost(c, "cannot resolve host: " + ec.message());
                             asio::async_connect(
                                 c->socket, results,
                                 [self, c](boost::system::error_code ec, const tcp::endpoint&) {
                                   if (c != self->conn) return;
                                   if (ec) return self->Lost(c, ec.message());
                                   boost::system::error_code ignored;
                                   c->socket.set_option(tcp::no_delay(true), ignored);
                                   self->Handshake(c);
                                   self->Read(c);
                                 });
                           });
  }

  // AUTH and SELECT when the URL asks, then PING: up once all answered OK.
  void Handshake(const std::shared_ptr<Connection>& c) {
    const auto& url = options.url;
    std::vector<std::vector<std::string>> commands;
    if (!url.password.empty()) {
      if (url.user.empty()) {
        commands.push_back({"AUTH", url.password});
      } else {
        commands.push_back({"AUTH", url.user, url.password});
      }
    }
    if (url.db != 0) commands.push_back({"SELECT", std::to_string(url.db)});
    commands.push_back({"PING"});
    const auto deadline = Clock::now() + options.stall_limit;
    for (std::size_t i = 0; i < commands.size(); ++i) {
      const bool last = i + 1 == commands.size();
      const std::string what = commands[i][0];
      Enqueue(commands[i], deadline,
              [self = shared_from_this(), c, last, what](Result<Reply> reply) {
                if (c != self->conn) return;
                // Redis error texts never echo the password.
                if (!reply) return self->Lost(c, what + ": " + reply.error().message);
                if (reply->is_error()) return self->Lost(c, what + " refused: " + reply->text);
                if (last) self->Up();
              });
    }
  }

  void Up() {
    up = true;
    backoff = kFirstBackoff;
    owner.connected_.store(true, std::memory_order_relaxed);
    Log().info("{}: connected", Name());
    reported_down = false;
  }

  // Closes `c`, fails every waiting call, and schedules a reconnect.
  void Lost(const std::shared_ptr<Connection>& c, const std::string& why) {
    if (c != conn) return;
    const bool was_up = up;
    up = false;
    owner.connected_.store(false, std::memory_order_relaxed);
    boost::system::error_code ignored;
    c->socket.close(ignored);
    conn.reset();
    FailAll(ErrorCode::kUnavailable, "redis connection lost: " + why);
    if (stopping) return;
    if (was_up || !reported_down) {
      Log().warn("{}: {}{}; retrying in the background", Name(),
                 was_up ? "connection lost: " : "unreachable: ", why);
      reported_down = true;
    } else {
      Log().debug("{}: still unreachable: {}", Name(), why);
    }
    // Full jitter over the upper half, so replicas do not reconnect in step.
    auto half = backoff.count() / 2;
    auto wait = std::chrono::milliseconds(half + static_cast<long>(random() % (half + 1)));
    backoff =
        std::min(backoff * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kMaxBackoff));
    retry_timer.expires_after(wait);
    retry_timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->Connect();
    });
  }

  void FailAll(ErrorCode code, const std::string& why) {
    auto waiting = std::move(pending);
    pending.clear();
    for (auto& p : waiting) {
      if (p.done) p.done(Fail(code, why));
    }
  }

  void Enqueue(const std::vector<std::string>& args, Clock::time_point deadline, Completion done) {
    if (!conn) {
      done(Fail(ErrorCode::kUnavailable, "not connected to redis"));
      return;
    }
    EncodeCommand(conn->out, args);
    pending.push_back({Clock::now(), deadline, std::move(done)});
    Flush(conn);
    ArmTimer(deadline);
  }

  void Flush(const std::shared_ptr<Connection>& c) {
    if (c->writing || c->out.empty()) return;
    c->writing = true;
    auto buffer = std::make_shared<std::string>(std::move(c->out));
    c->out.clear();
    asio::async_write(
        c->socket, asio::buffer(*buffer),
        [self = shared_from_this(), c, buffer](boost::system::error_code ec, std::size_t) {
          if (c != self->conn) return;
          c->writing = false;
          if (ec) return self->Lost(c, "write: " + ec.message());
          self->Flush(c);
        });
  }

  void Read(const std::shared_ptr<Connection>& c) {
    c->socket.async_read_some(
        asio::buffer(c->chunk),
        [self = shared_from_this(), c](boost::system::error_code ec, std::size_t n) {
          if (c != self->conn) return;
          if (ec) {
            return self->Lost(c, ec == asio::error::eof ? "closed by the server" : ec.message());
          }
          c->in.append(c->chunk.data(), n);
          std::size_t offset = 0;
          for (;;) {
            Reply reply;
            auto outcome = ParseReply(std::string_view(c->in).substr(offset), reply);
            if (outcome.status == ParseOutcome::Status::kIncomplete) break;
            if (outcome.status == ParseOutcome::Status::kMalformed) {
              return self->Lost(c, "malformed reply: " + outcome.error);
            }
            offset += outcome.consumed;
            if (self->pending.empty()) return self->Lost(c, "a reply nobody asked for");
            Completion done = std::move(self->pending.front().done);
            self->pending.pop_front();
            if (done) done(std::move(reply));
            if (c != self->conn) return;  // the completion closed the connection
          }
          c->in.erase(0, offset);
          // One reply may legitimately span reads, but not without bound (an
          // array of 1,024 bulk strings of 1 MiB each would).
          if (c->in.size() > kMaxBufferedBytes) return self->Lost(c, "reply too large");
          self->Read(c);
        });
  }

  void ArmTimer(Clock::time_point at) {
    if (timer_armed && timer_at <= at) return;
    timer_armed = true;
    timer_at = at;
    timer.expires_at(at);
    timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted) return;  // re-armed earlier, or stopping
      self->timer_armed = false;
      self->OnTimer();
    });
  }

  void OnTimer() {
    const auto now = Clock::now();
    std::vector<Completion> due;
    for (auto& p : pending) {
      if (p.done && p.deadline <= now) due.push_back(std::move(p.done)), p.done = nullptr;
    }
    for (auto& done : due) {
      done(Fail(ErrorCode::kTimeout,
                "redis did not answer within " + std::to_string(options.timeout.count()) + " ms"));
    }
    if (conn && !pending.empty() && now - pending.front().sent >= options.stall_limit) {
      Lost(conn, "no reply for " + std::to_string(options.stall_limit.count()) + " ms");
    }
    if (pending.empty()) return;
    Clock::time_point next = pending.front().sent + options.stall_limit;
    for (const auto& p : pending) {
      if (p.done) next = std::min(next, p.deadline);
    }
    ArmTimer(next);
  }

  void Shutdown() {
    stopping = true;
    if (conn) {
      boost::system::error_code ignored;
      conn->socket.close(ignored);
      conn.reset();
    }
    up = false;
    owner.connected_.store(false, std::memory_order_relaxed);
    FailAll(ErrorCode::kCancelled, "redis client stopped");
    resolver.cancel();
    timer.cancel();
    retry_timer.cancel();
    work.reset();
  }
};

Client::Client(ClientOptions options)
    : options_(std::move(options)), impl_(std::make_shared<Impl>(*this, options_)) {
  impl_->thread = std::thread([impl = impl_] {
    pthread_setname_np(pthread_self(), "redis");
    impl->io.run();
  });
  asio::post(impl_->io, [impl = impl_] { impl->Connect(); });
}

Client::~Client() {
  asio::post(impl_->io, [impl = impl_] { impl->Shutdown(); });
  impl_->thread.join();
}

bool Client::WaitConnected(std::chrono::milliseconds timeout) const {
  auto until = Clock::now() + timeout;
  while (!connected()) {
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

ClientStats Client::stats() const {
  return {calls_.load(std::memory_order_relaxed), failed_.load(std::memory_order_relaxed)};
}

http::Awaitable<Result<Reply>> Client::Call(std::vector<std::string> args) {
  calls_.fetch_add(1, std::memory_order_relaxed);
  if (!connected()) {
    failed_.fetch_add(1, std::memory_order_relaxed);
    co_return Fail(ErrorCode::kUnavailable, "not connected to redis");
  }
  if (in_flight_.fetch_add(1, std::memory_order_relaxed) >= options_.max_in_flight) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    failed_.fetch_add(1, std::memory_order_relaxed);
    co_return Fail(ErrorCode::kUnavailable, "too many redis calls in flight");
  }
  const auto deadline = Clock::now() + options_.timeout;
  std::shared_ptr<Impl> impl = impl_;
  std::atomic<std::size_t>* in_flight = &in_flight_;
  auto result = co_await asio::async_initiate<const http::UseAwaitable, void(Result<Reply>)>(
      [&impl, &args, deadline, in_flight](auto handler) {
        auto work = asio::prefer(asio::get_associated_executor(handler),
                                 asio::execution::outstanding_work.tracked);
        // Runs on the client's thread; resumes the caller on its own executor.
        Completion done = [handler = std::move(handler), work = std::move(work),
                           in_flight](Result<Reply> reply) mutable {
          in_flight->fetch_sub(1, std::memory_order_relaxed);
          auto ex = asio::get_associated_executor(handler);
          asio::post(ex, [handler = std::move(handler), reply = std::move(reply)]() mutable {
            std::move(handler)(std::move(reply));
          });
        };
        asio::post(impl->io,
                   [impl, args = std::move(args), deadline, done = std::move(done)]() mutable {
                     impl->Enqueue(args, deadline, std::move(done));
                   });
      },
      http::use_awaitable);
  if (!result) failed_.fetch_add(1, std::memory_order_relaxed);
  co_return result;
}

http::Awaitable<Result<Reply>> Client::Eval(const Script& script, std::vector<std::string> keys,
                                            std::vector<std::string> args) {
  std::vector<std::string> command;
  command.reserve(3 + keys.size() + args.size());
  command.push_back("EVALSHA");
  command.push_back(script.sha1());
  command.push_back(std::to_string(keys.size()));
  command.insert(command.end(), keys.begin(), keys.end());
  command.insert(command.end(), args.begin(), args.end());
  auto reply = co_await Call(command);
  if (!reply || !reply->is_error() || !reply->text.starts_with("NOSCRIPT")) co_return reply;
  // Not in this server's script cache (restarted, or SCRIPT FLUSH): EVAL
  // runs it and caches it for the next EVALSHA.
  command[0] = "EVAL";
  command[1] = script.source();
  co_return co_await Call(std::move(command));
}

}  // namespace disco::service::redis
