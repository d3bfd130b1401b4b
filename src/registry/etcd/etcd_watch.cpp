#include "registry/etcd/etcd_watch.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "util/backoff.h"
#include "util/log.h"

namespace disco::etcd {
namespace {

// A stream that has been silent this long gets a progress request...
constexpr std::chrono::milliseconds kProgressInterval{3000};
// ...and is declared dead if nothing at all arrives this long after it.
constexpr std::chrono::milliseconds kProgressTimeout{3000};
constexpr std::chrono::milliseconds kRetryBackoffInitial{100};
constexpr std::chrono::milliseconds kRetryBackoffMax{2000};

std::atomic<std::uint64_t> g_resyncs{0};
std::atomic<std::uint64_t> g_compaction_cancels{0};
std::atomic<std::uint64_t> g_silent_streams{0};

std::mutex g_hook_mu;
std::function<void(std::string_view, std::int64_t)> g_before_create_hook;  // guarded by g_hook_mu

void RunBeforeCreateHook(std::string_view service, std::int64_t start_revision) {
  std::function<void(std::string_view, std::int64_t)> hook;
  {
    std::lock_guard lock(g_hook_mu);
    hook = g_before_create_hook;
  }
  if (hook) hook(service, start_revision);
}

// Completion-queue tags: at most one operation of each kind is in flight.
enum class Op : std::uintptr_t { kStart = 1, kRead, kWrite, kFinish };
void* Tag(Op op) { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(op)); }
Op TagOp(void* tag) { return static_cast<Op>(reinterpret_cast<std::uintptr_t>(tag)); }

}  // namespace

class WatchLoop : public std::enable_shared_from_this<WatchLoop> {
 public:
  WatchLoop(std::shared_ptr<Context> context, std::string service, WatchCallback callback)
      : context_(std::move(context)),
        service_(std::move(service)),
        service_prefix_(ServicePrefix(context_->prefix, service_)),
        callback_(std::move(callback)) {}

  void Start() {
    thread_ = std::thread([self = shared_from_this()] { self->Run(); });
  }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      if (stream_context_ != nullptr) stream_context_->TryCancel();
    }
    canceller_.Cancel();
    wake_.notify_all();
    if (!thread_.joinable()) return;
    // Destroying the handle from inside its own callback is forbidden by the
    // contract; detaching instead of deadlocking is the least bad answer.
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }

 private:
  bool Stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  void Sleep(std::chrono::milliseconds duration) {
    std::unique_lock lock(mu_);
    wake_.wait_for(lock, duration, [this] { return stopping_; });
  }

  void Run() {
    if (auto ok = ValidateName("service name", service_); !ok) {
      Deliver(WatchUpdate{false, {}, ok.error()});
      return;
    }
    Backoff backoff(kRetryBackoffInitial, kRetryBackoffMax);
    bool delivered = false;
    bool failing = false;
    while (!Stopping()) {
      auto listing =
          ListService(*context_, service_, {context_->connection.Deadline(), &canceller_});
      if (Stopping()) return;
      if (delivered) g_resyncs.fetch_add(1, std::memory_order_relaxed);
      if (!listing) {
        if (!failing) {
          failing = true;
          log::Get().debug("etcd {}: watch of {} cannot list: {}", context_->url, service_,
                           listing.error().ToString());
          Deliver(WatchUpdate{false, {}, listing.error()});
        }
        Sleep(backoff.Next());
        continue;
      }
      if (!delivered || failing || listing->instances != cache_) {
        cache_ = std::move(listing->instances);
        Deliver(WatchUpdate{true, SortedInstances(cache_), {}});
        delivered = true;
        failing = false;
      }
      RunBeforeCreateHook(service_, listing->revision + 1);
      if (Stream(listing->revision + 1)) {
        backoff.Reset();
      } else {
        // The stream failed at once or was refused: do not hammer etcd with
        // Range + create in a tight loop.
        Sleep(backoff.Next());
      }
    }
  }

  void Deliver(const WatchUpdate& update) {
    if (Stopping()) return;
    // An exception escaping here would end the process (std::terminate on
    // the watch thread); report it and keep watching instead.
    try {
      callback_(update);
    } catch (const std::exception& e) {
      log::Get().error("etcd {}: watch callback for {} threw: {}", context_->url, service_,
                       e.what());
    } catch (...) {
      log::Get().error("etcd {}: watch callback for {} threw", context_->url, service_);
    }
  }

  // Applies the events of one response; true if the list changed.
  bool Apply(const etcdserverpb::WatchResponse& response) {
    bool changed = false;
    for (const auto& event : response.events()) {
      const auto& kv = event.kv();
      if (!kv.key().starts_with(service_prefix_)) continue;
      std::string id = kv.key().substr(service_prefix_.size());
      if (event.type() == etcdserverpb::Event::DELETE) {
        changed |= cache_.erase(id) > 0;
        continue;
      }
      auto instance = DecodeValue(service_, service_prefix_, kv.key(), kv.value());
      if (!instance) {
        context_->malformed.Warn(context_->url, kv.key(), kv.mod_revision(), instance.error());
        // A valid value overwritten by a malformed one no longer names an endpoint.
        changed |= cache_.erase(id) > 0;
        continue;
      }
      auto [it, inserted] = cache_.try_emplace(id, *instance);
      if (!inserted && !(it->second == *instance)) {
        it->second = std::move(*instance);
        changed = true;
      }
      changed |= inserted;
    }
    return changed;
  }

  // Runs one watch stream until it ends. Returns true if an immediate resync
  // is fine: the watch was canceled for compaction, or it served for a while.
  bool Stream(std::int64_t start_revision) {
    constexpr auto kHealthyLifetime = std::chrono::seconds(1);
    const auto opened = Clock::now();
    bool compacted = false;
    grpc::ClientContext context;
    auto target =
        context_->connection.PrepareStream(context, {context_->connection.Deadline(), &canceller_});
    if (!target) return false;
    grpc::CompletionQueue queue;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return false;
      stream_context_ = &context;
    }
    auto stream = target->stubs->watch->PrepareAsyncWatch(&context, &queue);
    stream->StartCall(Tag(Op::kStart));

    std::deque<etcdserverpb::WatchRequest> to_write;
    {
      etcdserverpb::WatchRequest request;
      auto* create = request.mutable_create_request();
      create->set_key(service_prefix_);
      create->set_range_end(PrefixRangeEnd(service_prefix_));
      create->set_start_revision(start_revision);
      create->set_prev_kv(true);
      to_write.push_back(std::move(request));
    }
    etcdserverpb::WatchResponse response;
    bool start_pending = true;
    bool read_pending = false;
    bool write_pending = false;
    bool created = false;
    bool broken = false;
    auto last_heard = Clock::now();
    // When the unanswered progress request went out; min() when none is.
    Clock::time_point progress_sent = Clock::time_point::min();
    auto progress_pending = [&] { return progress_sent != Clock::time_point::min(); };

    auto write_next = [&] {
      if (write_pending || to_write.empty() || broken) return;
      stream->Write(to_write.front(), Tag(Op::kWrite));
      to_write.pop_front();
      write_pending = true;
    };
    auto read_next = [&] {
      response.Clear();
      stream->Read(&response, Tag(Op::kRead));
      read_pending = true;
    };
    auto give_up = [&] {
      broken = true;
      context.TryCancel();
    };

    while (start_pending || read_pending || write_pending) {
      if (!broken && Stopping()) give_up();
      Clock::time_point wake;
      if (broken) {
        // Cancelled: the pending operations complete promptly.
        wake = Clock::now() + std::chrono::milliseconds(200);
      } else if (!created) {
        wake = last_heard + context_->options.request_timeout;
      } else if (progress_pending()) {
        wake = progress_sent + kProgressTimeout;
      } else {
        wake = last_heard + kProgressInterval;
      }
      void* tag = nullptr;
      bool ok = false;
      auto status = queue.AsyncNext(&tag, &ok, ToGrpcDeadline(wake));
      if (status == grpc::CompletionQueue::SHUTDOWN) break;
      if (status == grpc::CompletionQueue::TIMEOUT) {
        if (broken || !created) {
          if (!created && !broken &&
              Clock::now() - last_heard >= context_->options.request_timeout) {
            g_silent_streams.fetch_add(1, std::memory_order_relaxed);
            log::Get().warn("etcd {}: watch of {} was not confirmed within {} ms; reconnecting",
                            context_->url, service_, context_->options.request_timeout.count());
            give_up();
          }
          continue;
        }
        auto now = Clock::now();
        if (progress_pending() && now - progress_sent >= kProgressTimeout) {
          g_silent_streams.fetch_add(1, std::memory_order_relaxed);
          log::Get().warn(
              "etcd {}: watch of {} got no answer to a progress request in {} ms; "
              "reconnecting",
              context_->url, service_, kProgressTimeout.count());
          give_up();
        } else if (!progress_pending() && now - last_heard >= kProgressInterval) {
          etcdserverpb::WatchRequest request;
          request.mutable_progress_request();
          to_write.push_back(std::move(request));
          progress_sent = now;
          write_next();
        }
        continue;
      }
      switch (TagOp(tag)) {
        case Op::kStart:
          start_pending = false;
          if (!ok) {
            give_up();
            break;
          }
          write_next();
          read_next();
          break;
        case Op::kWrite:
          write_pending = false;
          if (!ok) {
            give_up();
            break;
          }
          write_next();
          break;
        case Op::kRead:
          read_pending = false;
          if (!ok || broken) {
            give_up();
            break;
          }
          last_heard = Clock::now();
          progress_sent = Clock::time_point::min();
          if (response.created()) created = true;
          if (response.canceled()) {
            if (response.compact_revision() > 0) {
              g_compaction_cancels.fetch_add(1, std::memory_order_relaxed);
              compacted = true;
              log::Get().info("etcd {}: watch of {} canceled, revision compacted at {}; resyncing",
                              context_->url, service_, response.compact_revision());
            } else {
              log::Get().info("etcd {}: watch of {} canceled ({}); resyncing", context_->url,
                              service_, response.cancel_reason());
            }
            give_up();
            break;
          }
          if (Apply(response)) Deliver(WatchUpdate{true, SortedInstances(cache_), {}});
          read_next();
          break;
        case Op::kFinish:
          break;  // not issued yet
      }
    }

    grpc::Status status;
    stream->Finish(&status, Tag(Op::kFinish));
    void* tag = nullptr;
    bool ok = false;
    while (queue.Next(&tag, &ok)) {
      if (TagOp(tag) == Op::kFinish) break;
    }
    {
      std::lock_guard lock(mu_);
      stream_context_ = nullptr;
    }
    queue.Shutdown();
    while (queue.Next(&tag, &ok)) {
    }
    if (!Stopping() && status.error_code() != grpc::StatusCode::CANCELLED) {
      context_->connection.ReportStreamFailure(target->index, status);
      log::Get().debug("etcd {}: watch stream of {} ended: {}", context_->url, service_,
                       status.error_message());
    }
    return compacted || (created && Clock::now() - opened >= kHealthyLifetime);
  }

  const std::shared_ptr<Context> context_;
  const std::string service_;
  const std::string service_prefix_;
  const WatchCallback callback_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;                          // guarded by mu_
  grpc::ClientContext* stream_context_ = nullptr;  // guarded by mu_
  CallCanceller canceller_;
  std::thread thread_;

  // Only the watch thread touches these.
  std::map<std::string, ServiceInstance> cache_;  // by instance id
};

EtcdWatch::EtcdWatch(std::shared_ptr<Context> context, std::string service, WatchCallback callback)
    : loop_(std::make_shared<WatchLoop>(std::move(context), std::move(service),
                                        std::move(callback))) {
  loop_->Start();
}

EtcdWatch::~EtcdWatch() { loop_->Stop(); }

WatchCounters WatchCountersForTesting() {
  return {g_resyncs.load(), g_compaction_cancels.load(), g_silent_streams.load()};
}

void SetBeforeWatchCreateHookForTesting(
    std::function<void(std::string_view service, std::int64_t start_revision)> hook) {
  std::lock_guard lock(g_hook_mu);
  g_before_create_hook = std::move(hook);
}

}  // namespace disco::etcd
