#include "registry/etcd/etcd_watch.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
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
// With several members, new streams are refused ("no leader") until an
// election after a leader's loss ends: no error is reported for failures
// shorter than this, while a quorum may still exist. A candidate campaigns
// one to two election timeouts (1 s by default) after the last heartbeat,
// and one whose pre-vote fails (a member that has just joined, say) leaves
// it to the next: two rounds fit in 5 s. 2 s reported an election after a
// member's replacement as an outage (EtcdClusterTest.ReplacedMember...).
constexpr std::chrono::milliseconds kElectionGrace{5000};
// A resumed watch on a member whose store is behind the revision it resumes
// from asks for progress every kBehindPoll, and Ranges again if the store is
// still behind after kBehindLimit.
constexpr std::chrono::milliseconds kBehindPoll{100};
constexpr std::chrono::milliseconds kBehindLimit{1500};

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
    // Streams in a row, since the last one etcd confirmed, that were never
    // confirmed, went silent or ended for want of a leader; once every
    // endpoint had its chance the watch reports an error.
    std::size_t failed_streams = 0;
    // Among those, the last "no leader": it says more than a refused connection.
    std::optional<Error> no_leader;
    Clock::time_point failing_since;
    while (!Stopping()) {
      // Member discovery (auto_sync) may change the count.
      const std::size_t endpoints = context_->connection.endpoint_count();
      if (next_revision_ == 0 && !Resync()) {
        Sleep(backoff.Next());
        continue;
      }
      RunBeforeCreateHook(service_, next_revision_);
      const StreamEnd end = Stream(next_revision_);
      if (Stopping()) return;
      if (end.created) {
        // A member served this stream: whatever ended it starts a new run
        // (a run left over from before would report the next failure at
        // once, without trying another member).
        failed_streams = 0;
        no_leader.reset();
      }
      if (end.resync) {
        // Compaction, or a store behind what this watch saw: Range again.
        next_revision_ = 0;
        continue;
      }
      if (!end.created || end.no_leader || end.silent) {
        if (failed_streams++ == 0) failing_since = Clock::now();
        if (end.no_leader) no_leader = end.error;
      }
      if (failed_streams >= endpoints && !failing_ &&
          (endpoints == 1 || Clock::now() - failing_since >= kElectionGrace)) {
        failing_ = true;
        const Error& error = no_leader ? *no_leader : end.error;
        log::Get().debug("etcd {}: watch of {} has no member to serve it: {}", context_->url,
                         service_, error.ToString());
        Deliver(WatchUpdate{false, {}, error});
      }
      if (end.healthy) {
        backoff.Reset();
      } else {
        // The stream failed at once or was refused: do not hammer etcd.
        Sleep(backoff.Next());
      }
    }
  }

  // Ranges the service and delivers the list (the first time, after an
  // error, or when it changed); sets next_revision_. False if the Range failed.
  bool Resync() {
    auto listing = ListService(*context_, service_, {context_->connection.Deadline(), &canceller_});
    if (Stopping()) return false;
    if (delivered_) g_resyncs.fetch_add(1, std::memory_order_relaxed);
    if (!listing) {
      if (!failing_) {
        failing_ = true;
        log::Get().debug("etcd {}: watch of {} cannot list: {}", context_->url, service_,
                         listing.error().ToString());
        Deliver(WatchUpdate{false, {}, listing.error()});
      }
      return false;
    }
    if (!delivered_ || failing_ || listing->instances != cache_) {
      cache_ = std::move(listing->instances);
      Deliver(WatchUpdate{true, SortedInstances(cache_), {}});
      delivered_ = true;
      failing_ = false;
    }
    next_revision_ = listing->revision + 1;
    return true;
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
      // Events of one revision come in one response: after it, the watch
      // resumes from the next revision, on whichever member.
      next_revision_ = std::max(next_revision_, kv.mod_revision() + 1);
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

  // One watch stream, from its create request to its Finish. Only the watch
  // thread touches it.
  struct StreamState {
    // Declared before the queue and the stream, which use it: destroyed last.
    grpc::ClientContext context;
    grpc::CompletionQueue queue;
    std::unique_ptr<
        grpc::ClientAsyncReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>>
        stream;
    std::deque<etcdserverpb::WatchRequest> to_write;
    etcdserverpb::WatchResponse response;
    bool start_pending = true;
    bool read_pending = false;
    bool write_pending = false;
    bool created = false;
    bool broken = false;
    bool resync = false;  // canceled by etcd (compaction), or the store is behind
    bool silent = false;  // given up: etcd did not answer in time
    bool ours = false;    // this side cancelled the call
    // Since when the member's store is behind next_revision_; min() when not.
    Clock::time_point behind_since = Clock::time_point::min();
    bool behind() const { return behind_since != Clock::time_point::min(); }
    Clock::time_point last_heard;  // set when the call starts (PrepareStream may take long)
    // When the unanswered progress request went out; min() when none is.
    Clock::time_point progress_sent = Clock::time_point::min();

    bool progress_pending() const { return progress_sent != Clock::time_point::min(); }
    bool operations_pending() const { return start_pending || read_pending || write_pending; }
    void WriteNext() {
      if (write_pending || to_write.empty() || broken) return;
      stream->Write(to_write.front(), Tag(Op::kWrite));
      to_write.pop_front();
      write_pending = true;
    }
    void ReadNext() {
      response.Clear();
      stream->Read(&response, Tag(Op::kRead));
      read_pending = true;
    }
    // Cancels the call for a reason of this side (stopping, silence, resync),
    // as opposed to a stream that etcd ended.
    void CancelOurselves() {
      ours = true;
      GiveUp();
    }
    void GiveUp() {
      broken = true;
      context.TryCancel();
    }
  };

  // How a watch stream ended.
  struct StreamEnd {
    bool created = false;    // etcd confirmed the watch
    bool resync = false;     // Range before the next stream
    bool no_leader = false;  // the member lost its leader (require-leader)
    bool silent = false;     // given up: the member stopped answering
    bool healthy = false;    // compacted, or confirmed and served for a while
    Error error;             // why it ended
  };

  // Runs one watch stream until it ends.
  StreamEnd Stream(std::int64_t start_revision) {
    constexpr auto kHealthyLifetime = std::chrono::seconds(1);
    const auto opened = Clock::now();
    StreamState s;
    StreamEnd end;
    // As clientv3's WithRequireLeader: a member without a leader refuses the
    // watch, and ends it once it loses its leader, instead of keeping a
    // watch that can see no new event open in silence.
    s.context.AddMetadata("hasleader", "true");
    auto target = context_->connection.PrepareStream(
        s.context, {context_->connection.Deadline(), &canceller_});
    if (!target) {
      end.error = target.error();
      return end;
    }
    {
      std::lock_guard lock(mu_);
      if (stopping_) return end;
      stream_context_ = &s.context;
    }
    s.stream = target->stubs->watch->PrepareAsyncWatch(&s.context, &s.queue);
    s.stream->StartCall(Tag(Op::kStart));
    s.last_heard = Clock::now();
    s.to_write.push_back(CreateRequest(start_revision));

    while (s.operations_pending()) {
      if (!s.broken && Stopping()) s.CancelOurselves();
      void* tag = nullptr;
      bool ok = false;
      auto status = s.queue.AsyncNext(&tag, &ok, ToGrpcDeadline(NextWake(s)));
      if (status == grpc::CompletionQueue::SHUTDOWN) break;
      if (status == grpc::CompletionQueue::TIMEOUT) {
        OnSilence(s);
      } else {
        OnCompletion(s, TagOp(tag), ok);
      }
    }

    grpc::Status status = FinishStream(s);
    if (s.silent) {
      status = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "watch stream stopped answering");
    } else if (status.error_code() == grpc::StatusCode::CANCELLED && !s.ours && !Stopping()) {
      // etcd cancels the require-leader streams of a member that lost its
      // leader (its server-side context, so the client sees CANCELLED).
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "etcdserver: no leader (the member cancelled the watch)");
    }
    if (!Stopping() && (s.silent || status.error_code() != grpc::StatusCode::CANCELLED)) {
      context_->connection.ReportStreamFailure(*target, status);
      log::Get().debug("etcd {}: watch stream of {} ended: {}", context_->url, service_,
                       status.error_message());
    }
    end.created = s.created;
    end.resync = s.resync;
    end.no_leader = IsMemberUnready(status);
    end.silent = s.silent;
    end.healthy = s.resync || (s.created && Clock::now() - opened >= kHealthyLifetime);
    end.error = context_->connection.ToError(status, target->endpoint());
    return end;
  }

  etcdserverpb::WatchRequest CreateRequest(std::int64_t start_revision) const {
    etcdserverpb::WatchRequest request;
    auto* create = request.mutable_create_request();
    create->set_key(service_prefix_);
    create->set_range_end(PrefixRangeEnd(service_prefix_));
    // From the revision already seen, not the next one: etcd before 3.4.34 /
    // 3.5.15 (etcd-io/etcd#18089) drops the tombstone at a compaction's own
    // revision, so a watch that starts exactly there never sees that delete.
    // Started one revision earlier, such a compaction cancels the watch
    // (compact_revision) and the resync Ranges the truth; the events of the
    // seen revision arrive again and change nothing (Apply is idempotent).
    // The cost: etcd treats a watch from a past revision as unsynced and
    // catches it up in a 100 ms loop, so its first events may come that late.
    create->set_start_revision(std::max<std::int64_t>(1, start_revision - 1));
    create->set_prev_kv(true);
    return request;
  }

  // Until when to wait for the next completion before checking on the stream.
  Clock::time_point NextWake(const StreamState& s) const {
    // Cancelled: the pending operations complete promptly.
    if (s.broken) return Clock::now() + std::chrono::milliseconds(200);
    if (!s.created) return s.last_heard + context_->options.request_timeout;
    // Behind: ask again soon (an answer arrives within milliseconds).
    if (s.behind()) return std::min(s.behind_since + kBehindLimit, Clock::now() + kBehindPoll);
    if (s.progress_pending()) return s.progress_sent + kProgressTimeout;
    return s.last_heard + kProgressInterval;
  }

  // Nothing completed by NextWake: a stream that stays silent is asked for
  // progress, and given up when it does not answer (or was never confirmed),
  // because a dead connection can look exactly like a quiet service.
  void OnSilence(StreamState& s) {
    if (s.broken) return;
    auto now = Clock::now();
    if (!s.created) {
      if (now - s.last_heard >= context_->options.request_timeout) {
        g_silent_streams.fetch_add(1, std::memory_order_relaxed);
        log::Get().warn("etcd {}: watch of {} was not confirmed within {} ms; reconnecting",
                        context_->url, service_, context_->options.request_timeout.count());
        s.silent = true;
        s.CancelOurselves();
      }
      return;
    }
    if (s.progress_pending() && now - s.progress_sent >= kProgressTimeout) {
      g_silent_streams.fetch_add(1, std::memory_order_relaxed);
      log::Get().warn(
          "etcd {}: watch of {} got no answer to a progress request in {} ms; "
          "reconnecting",
          context_->url, service_, kProgressTimeout.count());
      s.silent = true;
      s.CancelOurselves();
    } else if (s.behind() && now - s.behind_since >= kBehindLimit) {
      log::Get().info(
          "etcd {}: watch of {} resumed at revision {} on a store that stays behind; "
          "resyncing",
          context_->url, service_, next_revision_);
      s.resync = true;
      s.CancelOurselves();
    } else if (!s.progress_pending() && (s.behind() || now - s.last_heard >= kProgressInterval)) {
      RequestProgress(s);
    }
  }

  void RequestProgress(StreamState& s) {
    etcdserverpb::WatchRequest request;
    request.mutable_progress_request();
    s.to_write.push_back(std::move(request));
    s.progress_sent = Clock::now();
    s.WriteNext();
  }

  void OnCompletion(StreamState& s, Op op, bool ok) {
    switch (op) {
      case Op::kStart:
        s.start_pending = false;
        if (!ok) {
          s.GiveUp();
          break;
        }
        s.WriteNext();
        s.ReadNext();
        break;
      case Op::kWrite:
        s.write_pending = false;
        if (!ok) {
          s.GiveUp();
          break;
        }
        s.WriteNext();
        break;
      case Op::kRead:
        s.read_pending = false;
        if (!ok || s.broken) {
          s.GiveUp();
          break;
        }
        OnResponse(s);
        break;
      case Op::kFinish:
        break;  // not issued yet
    }
  }

  // A response read on the stream: confirmation, progress, events or the
  // cancellation that ends it.
  void OnResponse(StreamState& s) {
    const auto& response = s.response;
    s.last_heard = Clock::now();
    s.progress_sent = Clock::time_point::min();
    const bool caught_up = response.header().revision() >= next_revision_ - 1;
    if (response.created()) {
      s.created = true;
      // A store behind what this watch has seen: a member that has not
      // applied the last revisions yet (it will, within milliseconds), or a
      // wiped etcd whose revisions started over (it will not). Ask for
      // progress until it catches up, and Range again if it does not.
      if (!caught_up) {
        s.behind_since = s.last_heard;
        RequestProgress(s);
      }
    } else if (s.behind() && caught_up) {
      s.behind_since = Clock::time_point::min();
    }
    if (s.behind() && s.last_heard - s.behind_since >= kBehindLimit) {
      log::Get().info("etcd {}: watch of {} resumed at revision {} on a store at {}; resyncing",
                      context_->url, service_, next_revision_, response.header().revision());
      s.resync = true;
      s.CancelOurselves();
      return;
    }
    if (s.created && !s.behind() && failing_) {
      // The registry is whole again: say so, with the list as it stands.
      failing_ = false;
      Deliver(WatchUpdate{true, SortedInstances(cache_), {}});
    }
    if (response.canceled()) {
      s.resync = true;
      if (response.compact_revision() > 0) {
        g_compaction_cancels.fetch_add(1, std::memory_order_relaxed);
        log::Get().info("etcd {}: watch of {} canceled, revision compacted at {}; resyncing",
                        context_->url, service_, response.compact_revision());
      } else {
        log::Get().info("etcd {}: watch of {} canceled ({}); resyncing", context_->url, service_,
                        response.cancel_reason());
      }
      s.CancelOurselves();
      return;
    }
    if (Apply(response)) Deliver(WatchUpdate{true, SortedInstances(cache_), {}});
    s.ReadNext();
  }

  // Ends the stream once no operation is pending: its final status, and the
  // queue shut down and drained.
  grpc::Status FinishStream(StreamState& s) {
    grpc::Status status;
    s.stream->Finish(&status, Tag(Op::kFinish));
    void* tag = nullptr;
    bool ok = false;
    while (s.queue.Next(&tag, &ok)) {
      if (TagOp(tag) == Op::kFinish) break;
    }
    {
      std::lock_guard lock(mu_);
      stream_context_ = nullptr;
    }
    s.queue.Shutdown();
    while (s.queue.Next(&tag, &ok)) {
    }
    return status;
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
  std::int64_t next_revision_ = 0;                // where the watch resumes; 0: Range first
  bool delivered_ = false;                        // a list was delivered
  bool failing_ = false;                          // the last delivery was an error
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
