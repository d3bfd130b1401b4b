#include "registry/dns/ares_loop.h"

#include <arpa/nameser.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <mutex>
#include <vector>

namespace disco::dns {
namespace {

// c-ares wants one library init per process before any channel.
void InitLibrary() {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
}

void OnAnswer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  std::unique_ptr<AresLoop::QueryCallback> done(static_cast<AresLoop::QueryCallback*>(arg));
  std::span<const unsigned char> answer;
  if (abuf && alen > 0) answer = {abuf, static_cast<std::size_t>(alen)};
  (*done)(status, answer);
}

}  // namespace

Error AresError(int status, const std::string& name) {
  const std::string what = " for " + name;
  switch (status) {
    case ARES_ENOTFOUND:
      return {ErrorCode::kNotFound, "NXDOMAIN: no such DNS name" + what};
    case ARES_ESERVFAIL:
      return {ErrorCode::kUnavailable, "SERVFAIL from the DNS server" + what};
    case ARES_EREFUSED:
      return {ErrorCode::kUnavailable, "the DNS server REFUSED the query" + what};
    case ARES_ETIMEOUT:
      return {ErrorCode::kTimeout, "DNS query timed out" + what};
    case ARES_ECONNREFUSED:
      return {ErrorCode::kUnavailable, "DNS server unreachable (connection refused)" + what};
    case ARES_EBADRESP:
    case ARES_EFORMERR:
      return {ErrorCode::kMalformed, "malformed DNS answer" + what};
    case ARES_EBADNAME:
      return {ErrorCode::kInvalidArgument, "bad DNS name" + what};
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
      return {ErrorCode::kCancelled, "DNS query cancelled" + what};
    default:
      return {ErrorCode::kInternal, std::string("c-ares: ") + ares_strerror(status) + what};
  }
}

Result<std::shared_ptr<AresLoop>> AresLoop::Make(const DnsConfig& config) {
  InitLibrary();
  std::shared_ptr<AresLoop> loop(new AresLoop());
  ares_options options{};
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
  options.sock_state_cb = &AresLoop::OnSocketState;
  options.sock_state_cb_data = loop.get();
  options.timeout = static_cast<int>(std::min<long long>(config.timeout.count(), INT_MAX));
  options.tries = config.tries;
  // SERVFAIL and REFUSED reach us as such: without this, c-ares 1.18 moves
  // on to the next server and, out of servers, reports "connection refused",
  // which would tell an operator to look at the network instead of the zone.
  // The watch retries anyway.
  options.flags = ARES_FLAG_NOCHECKRESP;
  mask |= ARES_OPT_FLAGS;
  // DNS only: /etc/hosts entries are not service discovery.
  std::string lookups = "b";
  options.lookups = lookups.data();
  std::string resolv_conf = config.resolv_conf;
  // A missing or serverless file: c-ares would quietly ask 127.0.0.1.
  if (auto ok = CheckResolvConf(config); !ok) return std::unexpected(ok.error());
  if (!resolv_conf.empty()) {
    options.resolvconf_path = resolv_conf.data();
    mask |= ARES_OPT_RESOLVCONF;
  }
  std::vector<char*> domains;
  if (config.search_set) {
    for (const auto& domain : config.search) domains.push_back(const_cast<char*>(domain.c_str()));
    options.domains = domains.data();
    options.ndomains = static_cast<int>(domains.size());
    mask |= ARES_OPT_DOMAINS;
  }
  if (config.ndots >= 0) {
    options.ndots = config.ndots;
    mask |= ARES_OPT_NDOTS;
  }
  if (int rc = ares_init_options(&loop->channel_, &options, mask); rc != ARES_SUCCESS) {
    return Fail(ErrorCode::kInvalidArgument,
                std::string("dns://: c-ares cannot start (") + ares_strerror(rc) + ")" +
                    (resolv_conf.empty() ? "" : " with resolv_conf=" + resolv_conf));
  }
  if (!config.servers.empty()) {
    std::string csv;
    for (const auto& server : config.servers) csv += (csv.empty() ? "" : ",") + server.ToString();
    if (int rc = ares_set_servers_ports_csv(loop->channel_, csv.c_str()); rc != ARES_SUCCESS) {
      return Fail(ErrorCode::kInvalidArgument, "dns://: bad name server list '" + csv +
                                                   "' (want IP addresses): " + ares_strerror(rc));
    }
  }
  loop->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (loop->wake_fd_ < 0) return Fail(ErrorCode::kInternal, "dns://: eventfd failed");
  loop->thread_ = std::thread([raw = loop.get()] { raw->Run(); });
  return loop;
}

AresLoop::~AresLoop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  if (wake_fd_ >= 0) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = write(wake_fd_, &one, sizeof one);
  }
  if (thread_.joinable()) {
    // Nothing on the loop thread owns the loop (watch callbacks run on the
    // delivery thread), but joining itself would deadlock: guarded anyway.
    if (OnLoopThread())
      thread_.detach();
    else
      thread_.join();
  }
  if (channel_) ares_destroy(channel_);  // no-op on queries: Run() destroyed them already
  if (wake_fd_ >= 0) close(wake_fd_);
}

bool AresLoop::Post(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || tasks_.size() >= kMaxQueued) return false;
    tasks_.push_back(std::move(task));
  }
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = write(wake_fd_, &one, sizeof one);
  return true;
}

void AresLoop::After(std::chrono::milliseconds delay, std::function<void()> task) {
  timers_.emplace(Clock::now() + delay, std::move(task));
}

void AresLoop::Query(const std::string& name, int type, bool absolute, QueryCallback done) {
  auto* arg = new QueryCallback(std::move(done));
  if (absolute)
    ares_query(channel_, name.c_str(), ns_c_in, type, &OnAnswer, arg);
  else
    ares_search(channel_, name.c_str(), ns_c_in, type, &OnAnswer, arg);
}

void AresLoop::OnSocketState(void* data, ares_socket_t fd, int readable, int writable) {
  auto* loop = static_cast<AresLoop*>(data);
  if (!readable && !writable) {
    loop->sockets_.erase(fd);
    return;
  }
  loop->sockets_[fd] = static_cast<short>((readable ? POLLIN : 0) | (writable ? POLLOUT : 0));
}

void AresLoop::Run() {
  std::vector<pollfd> fds;
  for (;;) {
    std::deque<std::function<void()>> tasks;
    {
      std::lock_guard lock(mu_);
      if (stopping_) break;
      tasks.swap(tasks_);
    }
    for (auto& task : tasks) task();
    const auto now = Clock::now();
    while (!timers_.empty() && timers_.begin()->first <= now) {
      auto task = std::move(timers_.begin()->second);
      timers_.erase(timers_.begin());
      task();
    }

    // Sleep until a socket is ready, c-ares's next timeout, the next timer or a wake-up.
    int wait_ms = 60'000;
    timeval max{60, 0}, tv{};
    if (timeval* next = ares_timeout(channel_, &max, &tv)) {
      wait_ms = static_cast<int>(std::min<long long>(
          60'000, static_cast<long long>(next->tv_sec) * 1000 + (next->tv_usec + 999) / 1000));
    }
    if (!timers_.empty()) {
      auto until =
          std::chrono::ceil<std::chrono::milliseconds>(timers_.begin()->first - Clock::now());
      wait_ms = static_cast<int>(
          std::clamp<long long>(until.count(), 0, static_cast<long long>(wait_ms)));
    }
    fds.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    for (const auto& [fd, events] : sockets_) fds.push_back({fd, events, 0});
    if (poll(fds.data(), fds.size(), wait_ms) < 0 && errno != EINTR) break;
    if (fds[0].revents) {
      std::uint64_t count = 0;
      [[maybe_unused]] auto n = read(wake_fd_, &count, sizeof count);
    }
    for (std::size_t i = 1; i < fds.size(); ++i) {
      const short ready = fds[i].revents;
      if (!ready) continue;
      // An error or hang-up is read so that c-ares sees it and fails over.
      const bool readable = ready & (POLLIN | POLLERR | POLLHUP);
      ares_process_fd(channel_, readable ? fds[i].fd : ARES_SOCKET_BAD,
                      (ready & POLLOUT) ? fds[i].fd : ARES_SOCKET_BAD);
    }
    ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts and retries
  }
  // Queries still in flight end here, on this thread, with ARES_EDESTRUCTION.
  ares_destroy(channel_);
  channel_ = nullptr;
  timers_.clear();
  std::lock_guard lock(mu_);
  tasks_.clear();
}

}  // namespace disco::dns
