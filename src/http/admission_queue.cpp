#include "disco/http/admission_queue.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <exception>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "disco/detail/asio.h"
#include "disco/metrics.h"
#include "http/suspended_coroutine.h"

namespace disco::http {

namespace asio = boost::asio;
using std::chrono::microseconds;
using TimePoint = AdmissionQueue::TimePoint;

namespace {

// Buckets for the time a task waited: 1 ms … 10 s.
constexpr double kWaitBuckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10};

}  // namespace

struct AdmissionQueue::Impl : std::enable_shared_from_this<AdmissionQueue::Impl> {
  // A suspended Run().
  using Waiter = detail::SuspendedCoroutine;
  // What the queue decided for one Run(), written before its Resume().
  struct Decision {
    Admission::Outcome outcome = Admission::Outcome::kRan;  // kRan: go ahead, a slot is held
    TimePoint decided{};
  };
  struct Entry {
    std::unique_ptr<Waiter> waiter;
    Decision* decision;
    TimePoint start_by;
  };
  // The tasks of one key waiting, oldest first. A lane exists exactly while
  // it has a task waiting, and its key is then in `fresh` or `ring`, once.
  using Lane = std::deque<Entry>;
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // Resumes collected under the lock, run after it is released.
  using Wakeups = std::vector<Entry>;

  Impl(BlockingPool& p, AdmissionOptions o)
      : pool(p),
        options(std::move(o)),
        concurrency(options.concurrency ? options.concurrency : pool.threads()),
        average_run_us(
            static_cast<double>(std::max<std::int64_t>(1, options.expected_run.count()))) {
    MetricsRegistry& m = options.metrics ? *options.metrics : MetricsRegistry::Default();
    const std::string_view label = options.name;
    queued_gauge =
        &m.GaugeFamily("disco_admission_queued", "Tasks waiting in an admission queue", {"queue"})
             .With({label});
    running_gauge = &m.GaugeFamily("disco_admission_running",
                                   "Tasks of an admission queue running on its pool", {"queue"})
                         .With({label});
    started_counter = &m.CounterFamily("disco_admission_started_total",
                                       "Tasks an admission queue started", {"queue"})
                           .With({label});
    rejected_counter =
        &m.CounterFamily("disco_admission_rejected_total",
                         "Tasks an admission queue refused because it was full (never run)",
                         {"queue"})
             .With({label});
    expired_counter = &m.CounterFamily("disco_admission_expired_total",
                                       "Tasks an admission queue dropped because they were not "
                                       "started by their deadline (never run)",
                                       {"queue"})
                           .With({label});
    wait_histogram = &m.HistogramFamily("disco_admission_wait_seconds",
                                        "Time started tasks waited in an admission queue",
                                        {"queue"}, kWaitBuckets)
                          .With({label});
  }

  TimePoint Now() const {
    return options.clock ? options.clock() : std::chrono::steady_clock::now();
  }

  // A new task: run it, queue it or refuse it. Under the lock; the entries
  // to resume go to `wake`.
  void ArriveLocked(std::string_view key, Entry entry, TimePoint now, Wakeups& wake) {
    SweepLocked(now, wake);
    if (entry.start_by <= now) {
      Finish(std::move(entry), Admission::Outcome::kExpired, now, wake);
    } else if (queued < MaxQueuedLocked()) {
      Enqueue(key, std::move(entry));
    } else {
      // Full: push out the newest task of the longest lane if it is at
      // least two longer than the newcomer's (else nothing gets fairer).
      auto mine = lanes.find(key);
      const std::size_t my_length = mine == lanes.end() ? 0 : mine->second.size();
      auto longest = lanes.end();
      for (auto it = lanes.begin(); it != lanes.end(); ++it) {
        if (longest == lanes.end() || it->second.size() > longest->second.size()) longest = it;
      }
      if (longest != lanes.end() && longest->second.size() >= my_length + 2) {
        Entry evicted = std::move(longest->second.back());
        longest->second.pop_back();
        --queued;  // the lane keeps at least one task: it stays
        Finish(std::move(evicted), Admission::Outcome::kRejected, now, wake);
        Enqueue(key, std::move(entry));
      } else {
        Finish(std::move(entry), Admission::Outcome::kRejected, now, wake);
      }
    }
    DispatchLocked(now, wake);
  }

  void Enqueue(std::string_view key, Entry entry) {
    auto it = lanes.find(key);
    if (it == lanes.end()) {
      it = lanes.emplace(std::string(key), Lane{}).first;
      fresh.push_back(it->first);
    }
    earliest = std::min(earliest, entry.start_by);
    it->second.push_back(std::move(entry));
    ++queued;
  }

  // Starts waiting tasks while slots are free: a fresh lane's first, else
  // one per lane of the ring in turn; a lane with more goes to the ring's end.
  void DispatchLocked(TimePoint now, Wakeups& wake) {
    while (running < concurrency && (!fresh.empty() || !ring.empty())) {
      auto& from = fresh.empty() ? ring : fresh;
      std::string key = std::move(from.front());
      from.pop_front();
      auto lane = lanes.find(key);
      Entry entry = std::move(lane->second.front());
      lane->second.pop_front();
      --queued;
      if (lane->second.empty()) {
        lanes.erase(lane);
      } else {
        ring.push_back(std::move(key));
      }
      if (entry.start_by <= now) {
        Finish(std::move(entry), Admission::Outcome::kExpired, now, wake);
        continue;
      }
      ++running;
      Finish(std::move(entry), Admission::Outcome::kRan, now, wake);
    }
    queued_gauge->Set(static_cast<std::int64_t>(queued));
    running_gauge->Set(static_cast<std::int64_t>(running));
  }

  // Drops every waiting task whose deadline has passed. Cheap unless one
  // has: `earliest` is a lower bound of the waiting tasks' deadlines.
  void SweepLocked(TimePoint now, Wakeups& wake) {
    if (now < earliest) return;
    earliest = TimePoint::max();
    bool emptied = false;
    for (auto it = lanes.begin(); it != lanes.end();) {
      Lane& lane = it->second;
      Lane kept;
      for (auto& entry : lane) {
        if (entry.start_by <= now) {
          --queued;
          Finish(std::move(entry), Admission::Outcome::kExpired, now, wake);
        } else {
          earliest = std::min(earliest, entry.start_by);
          kept.push_back(std::move(entry));
        }
      }
      lane = std::move(kept);
      if (lane.empty()) {
        it = lanes.erase(it);
        emptied = true;
      } else {
        ++it;
      }
    }
    if (emptied) {
      auto gone = [this](const std::string& key) { return !lanes.contains(key); };
      std::erase_if(fresh, gone);
      std::erase_if(ring, gone);
    }
  }

  // Records the decision for `entry` and hands it over for resuming.
  void Finish(Entry entry, Admission::Outcome outcome, TimePoint now, Wakeups& wake) {
    entry.decision->outcome = outcome;
    entry.decision->decided = now;
    switch (outcome) {
      case Admission::Outcome::kRan:
        ++started;
        started_counter->Inc();
        break;
      case Admission::Outcome::kRejected:
        ++rejected;
        rejected_counter->Inc();
        break;
      case Admission::Outcome::kExpired:
        ++expired;
        expired_counter->Inc();
        break;
    }
    wake.push_back(std::move(entry));
  }

  // Drops the waiting tasks whose deadline has passed (a task's timer).
  void Sweep() {
    Wakeups wake;
    {
      std::lock_guard lock(mu);
      SweepLocked(Now(), wake);
      queued_gauge->Set(static_cast<std::int64_t>(queued));
    }
    for (auto& entry : wake) entry.waiter->Resume();
  }

  // A started task's work returned or threw (on a pool thread).
  void Done(microseconds took) {
    Wakeups wake;
    {
      std::lock_guard lock(mu);
      --running;
      // An average of the last few run times, for Retry-After.
      average_run_us = 0.8 * average_run_us + 0.2 * static_cast<double>(took.count());
      const TimePoint now = Now();
      SweepLocked(now, wake);
      DispatchLocked(now, wake);
    }
    for (auto& entry : wake) entry.waiter->Resume();
  }

  std::size_t MaxQueuedLocked() const {
    if (options.max_queued > 0) return options.max_queued;
    const double startable = static_cast<double>(concurrency) *
                             static_cast<double>(
                                 std::chrono::duration_cast<microseconds>(options.max_wait).count()) /
                             std::max(1.0, average_run_us);
    return std::clamp<std::size_t>(static_cast<std::size_t>(std::ceil(startable)), concurrency,
                                   kMaxDerivedQueue);
  }

  std::chrono::seconds RetryAfterLocked() const {
    const double backlog = static_cast<double>(queued + running) / static_cast<double>(concurrency);
    const double seconds = std::ceil(backlog * average_run_us / 1e6);
    return std::chrono::seconds(static_cast<std::int64_t>(std::clamp(seconds, 1.0, 3600.0)));
  }

  BlockingPool& pool;
  const AdmissionOptions options;
  const std::size_t concurrency;

  mutable std::mutex mu;
  std::unordered_map<std::string, Lane, Hash, std::equal_to<>> lanes;
  // Keys of lanes not served since they last became non-empty (in order of
  // arrival), and of those served and still waiting (round-robin). Fresh
  // lanes go first, as FQ-CoDel's new flows do: a client with nothing
  // waiting (one login now and then) waits only for the tasks running, not
  // for a turn of every client with a backlog.
  std::deque<std::string> fresh;
  std::deque<std::string> ring;
  std::size_t queued = 0;
  std::size_t running = 0;
  TimePoint earliest = TimePoint::max();
  double average_run_us;
  std::uint64_t started = 0;
  std::uint64_t rejected = 0;
  std::uint64_t expired = 0;

  Gauge* queued_gauge;
  Gauge* running_gauge;
  Counter* started_counter;
  Counter* rejected_counter;
  Counter* expired_counter;
  Histogram* wait_histogram;
};

AdmissionQueue::AdmissionQueue(BlockingPool& pool, AdmissionOptions options)
    : impl_(std::make_shared<Impl>(pool, std::move(options))) {}

AdmissionQueue::~AdmissionQueue() = default;

const AdmissionOptions& AdmissionQueue::options() const { return impl_->options; }

std::chrono::seconds AdmissionQueue::RetryAfter() const {
  std::lock_guard lock(impl_->mu);
  return impl_->RetryAfterLocked();
}

std::chrono::microseconds AdmissionQueue::ExpectedRun() const {
  std::lock_guard lock(impl_->mu);
  return microseconds(static_cast<std::int64_t>(impl_->average_run_us));
}

AdmissionStats AdmissionQueue::stats() const {
  std::lock_guard lock(impl_->mu);
  return AdmissionStats{.queued = impl_->queued,
                        .max_queued = impl_->MaxQueuedLocked(),
                        .running = impl_->running,
                        .started = impl_->started,
                        .rejected = impl_->rejected,
                        .expired = impl_->expired};
}

Awaitable<Admission> AdmissionQueue::Run(std::string_view key, std::function<void()> work,
                                         TimePoint start_by) {
  Impl* impl = impl_.get();
  const TimePoint arrived = impl->Now();
  const TimePoint deadline = std::min(start_by, arrived + impl->options.max_wait);
  Impl::Decision decision;
  // Wakes the queue at the deadline, so that a task dropped then is answered
  // then, not at the next arrival or completion. Cancelled once decided; its
  // handler holds no reference to this frame, and only a weak one to the queue.
  asio::steady_timer timer(co_await asio::this_coro::executor);
  if (impl->options.clock) {
    timer.expires_after(deadline - arrived);
  } else {
    timer.expires_at(deadline);
  }
  timer.async_wait([weak = std::weak_ptr<Impl>(impl_)](boost::system::error_code ec) {
    if (ec) return;
    if (auto queue = weak.lock()) queue->Sweep();
  });
  co_await asio::async_initiate<const http::UseAwaitable, void()>(
      [impl, key, deadline, arrived, &decision](auto handler) {
        Impl::Wakeups wake;
        {
          std::lock_guard lock(impl->mu);
          impl->ArriveLocked(
              key, Impl::Entry{detail::Suspend(std::move(handler)), &decision, deadline},
              arrived, wake);
        }
        for (auto& entry : wake) entry.waiter->Resume();
      },
      http::use_awaitable);
  timer.cancel();

  Admission admission;
  admission.outcome = decision.outcome;
  admission.waited = std::chrono::duration_cast<microseconds>(decision.decided - arrived);
  if (!admission.ran()) {
    admission.retry_after = RetryAfter();
    co_return admission;
  }
  impl->wait_histogram->Observe(static_cast<double>(admission.waited.count()) / 1e6);
  // The slot is given back on the pool thread as soon as the work ends, so
  // the next task starts without waiting for this coroutine to resume.
  // Named before the co_await (GCC 12, disco/http/blocking_pool.h).
  std::function<void()> task = [impl, &work] {
    const auto started = std::chrono::steady_clock::now();
    struct Release {
      Impl* impl;
      std::chrono::steady_clock::time_point started;
      ~Release() {
        impl->Done(
            std::chrono::duration_cast<microseconds>(std::chrono::steady_clock::now() - started));
      }
    } release{impl, started};
    work();
  };
  co_await impl->pool.Run(std::move(task));
  co_return admission;
}

}  // namespace disco::http
