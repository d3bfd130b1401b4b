// AdmissionQueue: admission control for expensive work run on a
// BlockingPool (bcrypt): a bounded queue with a deadline, fair among clients.
//
//   http::AdmissionQueue bcrypt(cpu_pool, {.name = "bcrypt", .max_queued = 26});
//   bool ok = false;
//   std::function<void()> verify = [&] { ok = VerifyPassword(password, hash); };
//   auto admission = co_await bcrypt.Run(client_address, std::move(verify));
//   if (!admission.ran()) co_return Overloaded(admission.retry_after);
//
// At most `concurrency` tasks are on the pool at once (default: its
// threads). The others wait here, where they can still be refused or
// dropped, rather than in the pool's own queue, where they could not.
//
// Fairness: waiting tasks are grouped by key (the client), oldest first
// within a key. A key with nothing waiting that gets a task goes first (in
// order of arrival among such keys: FQ-CoDel's "new flows"); once served, a
// key that still has tasks waiting takes its turns round-robin with the
// others. So a client with a task now and then waits only for the tasks
// running and other such clients, never for a turn of every client with a
// backlog; and a client with a backlog waits for at most one task of every
// other one, however many those have queued. (Clients with a backlog can be
// starved by a stream of new ones: their tasks then expire, below.)
//
// Bounds, each answered at once and without running the work:
//   - kRejected: at most max_queued tasks wait. A task arriving at a full
//     queue takes the place of the newest task of the key with the most
//     waiting when that key has at least two more than the newcomer's key
//     (longest-queue drop: the heaviest client pays, whose task is then
//     rejected); otherwise the newcomer is rejected.
//   - kExpired: a task not started by its start deadline is dropped. The
//     deadline is Run()'s time plus max_wait, or the caller's own `start_by`
//     when earlier (it will have given up by then, e.g. a proxy's timeout),
//     and answered then (a timer on the caller's executor).
// Both come with a Retry-After estimate: the time to run what is queued and
// running now, from the measured run time (at least 1 s).
//
// Metrics (AdmissionOptions::metrics, label queue="<name>"):
// disco_admission_queued and disco_admission_running (gauges),
// disco_admission_started_total, disco_admission_rejected_total,
// disco_admission_expired_total, disco_admission_wait_seconds (histogram of
// the time started tasks waited).
//
// Thread safety: Run() may be called from coroutines on any io_context and
// thread at once; the state is guarded by one short-held mutex. The queue
// and the pool must outlive every Run() in progress. The same GCC 12 caveat
// as BlockingPool::Run applies to the work: name a lambda that captures by
// value before the co_await.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "disco/http/awaitable.h"
#include "disco/http/blocking_pool.h"

namespace disco {
class MetricsRegistry;
}

namespace disco::http {

inline constexpr std::size_t kMaxDerivedQueue = 100'000;

struct AdmissionOptions {
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  std::string name = "work";    // the metrics' queue label
  std::size_t concurrency = 0;  // tasks on the pool at once; 0: the pool's threads
  // Waiting tasks at most, all keys together. 0: as many as `concurrency`
  // can start within max_wait at the measured run time (at least
  // `concurrency`, at most kMaxDerivedQueue), re-derived as run times
  // change: a bound fixed from one timing at start-up is wrong whenever that
  // start-up ran on a loaded machine, or the load changes later.
  std::size_t max_queued = 64;
  // A task not started this long after Run() is dropped (kExpired).
  std::chrono::milliseconds max_wait{2000};
  // What one task is expected to take, until tasks have been measured (an
  // average of the last ones is used afterwards): for Retry-After.
  std::chrono::microseconds expected_run{100'000};
  MetricsRegistry* metrics = nullptr;  // nullptr: MetricsRegistry::Default()
  Clock clock{};                       // for tests; empty: steady_clock::now
};

// What Run() came to.
struct Admission {
  enum class Outcome {
    kRan,       // the work ran (and returned; had it thrown, Run() would rethrow)
    kRejected,  // the queue was full: refused, never run
    kExpired,   // not started by its deadline: dropped, never run
  };
  Outcome outcome = Outcome::kRan;
  std::chrono::seconds retry_after{0};  // refused or dropped: when to come back (>= 1 s)
  std::chrono::microseconds waited{0};  // time spent waiting in the queue

  bool ran() const { return outcome == Outcome::kRan; }
};

struct AdmissionStats {
  std::size_t queued = 0;  // waiting now
  std::size_t max_queued = 0;  // the bound now (derived, when max_queued was 0)
  std::size_t running = 0;
  std::uint64_t started = 0;
  std::uint64_t rejected = 0;
  std::uint64_t expired = 0;
};

class AdmissionQueue {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // `pool` must outlive the queue.
  AdmissionQueue(BlockingPool& pool, AdmissionOptions options);
  ~AdmissionQueue();
  AdmissionQueue(const AdmissionQueue&) = delete;
  AdmissionQueue& operator=(const AdmissionQueue&) = delete;

  // Runs `work` on the pool when its turn comes (see above), or refuses or
  // drops it. `key` names the client for fairness (copied). `start_by`: the
  // caller's own deadline for the work to start (TimePoint::max(): none).
  // An exception thrown by the work is rethrown here.
  Awaitable<Admission> Run(std::string_view key, std::function<void()> work,
                           TimePoint start_by = TimePoint::max());

  // When a task refused now should come back (>= 1 s).
  std::chrono::seconds RetryAfter() const;
  // The current estimate of one task's run time.
  std::chrono::microseconds ExpectedRun() const;

  AdmissionStats stats() const;
  const AdmissionOptions& options() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // weakly held by the deadline timers
};

}  // namespace disco::http
