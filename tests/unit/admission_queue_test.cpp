// http::AdmissionQueue: the bound (refused at once), longest-queue drop,
// round-robin among keys, deadlines (dropped before starting, never run),
// exceptions, Retry-After and the metrics. One pool thread blocked on a gate
// holds the queue still; the deadlines use an injected clock.
#include "disco/http/admission_queue.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "disco/detail/asio.h"
#include "disco/metrics.h"
#include "fixture/util.h"

namespace disco::http {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Outcome = Admission::Outcome;

class AdmissionQueueTest : public ::testing::Test {
 protected:
  struct Record {
    std::string name;
    Outcome outcome;
    std::chrono::seconds retry_after;
  };

  AdmissionQueueTest() : io_([this] { ioc_.run(); }) {}
  ~AdmissionQueueTest() override {
    for (std::size_t i = 0; i < kGates; ++i) Open(i);
    guard_.reset();
    io_.join();
  }

  // A queue over one pool thread, one task at a time, with a fake clock
  // (unless `real_clock`).
  void Make(std::size_t max_queued, std::chrono::milliseconds max_wait = 10s,
            bool real_clock = false) {
    AdmissionOptions::Clock clock = [this] { return start_ + offset_.load(); };
    queue_ = std::make_unique<AdmissionQueue>(
        pool_, AdmissionOptions{.name = "test",
                                .concurrency = 1,
                                .max_queued = max_queued,
                                .max_wait = max_wait,
                                .expected_run = 400ms,
                                .metrics = &metrics_,
                                .clock = real_clock ? nullptr : clock});
  }

  // Submits a task named `name` for `key`; its work records the name in
  // `ran_`, after waiting for Open(gate) when `gate` >= 0.
  void Submit(const std::string& key, const std::string& name, int gate = -1,
              AdmissionQueue::TimePoint start_by = AdmissionQueue::TimePoint::max()) {
    asio::co_spawn(ioc_, Task(key, name, gate, start_by), asio::detached);
  }
  // A member coroutine taking copies: a lambda coroutine's captures would
  // die with the lambda, before the coroutine ends.
  Awaitable<void> Task(std::string key, std::string name, int gate,
                       AdmissionQueue::TimePoint start_by) {
    std::function<void()> work = [this, name, gate] {
      if (gate >= 0) gates_[static_cast<std::size_t>(gate)].wait();
      std::lock_guard lock(mu_);
      ran_.push_back(name);
    };
    auto admission = co_await queue_->Run(key, std::move(work), start_by);
    std::lock_guard lock(mu_);
    done_.push_back({name, admission.outcome, admission.retry_after});
  }

  void Open(std::size_t gate = 0) {
    if (!opened_[gate].exchange(true)) releases_[gate].set_value();
  }
  bool WaitDone(std::size_t n) {
    return testing::WaitFor(
        [&] {
          std::lock_guard lock(mu_);
          return done_.size() >= n;
        },
        5s, 2ms);
  }
  bool WaitQueued(std::size_t n) {
    return testing::WaitFor([&] { return queue_->stats().queued == n; }, 5s, 2ms);
  }
  bool WaitRunning(std::size_t n) {
    return testing::WaitFor([&] { return queue_->stats().running == n; }, 5s, 2ms);
  }
  std::vector<std::string> Ran() {
    std::lock_guard lock(mu_);
    return ran_;
  }
  std::optional<Record> Find(const std::string& name) {
    std::lock_guard lock(mu_);
    for (const auto& r : done_) {
      if (r.name == name) return r;
    }
    return std::nullopt;
  }

  MetricsRegistry metrics_;
  BlockingPool pool_{{.name = "adm-test", .threads = 1, .nice = 0}};
  std::unique_ptr<AdmissionQueue> queue_;
  const AdmissionQueue::TimePoint start_ = std::chrono::steady_clock::now();
  std::atomic<std::chrono::nanoseconds> offset_{0ns};
  static constexpr std::size_t kGates = 2;
  std::array<std::promise<void>, kGates> releases_;
  std::array<std::shared_future<void>, kGates> gates_ = {releases_[0].get_future().share(),
                                                         releases_[1].get_future().share()};
  std::array<std::atomic<bool>, kGates> opened_{};
  std::mutex mu_;
  std::vector<std::string> ran_;
  std::vector<Record> done_;
  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_{ioc_.get_executor()};
  std::thread io_;
};

TEST_F(AdmissionQueueTest, RunsWorkAndSaysSo) {
  Make(4);
  Submit("a", "one");
  ASSERT_TRUE(WaitDone(1));
  EXPECT_EQ(Find("one")->outcome, Outcome::kRan);
  EXPECT_EQ(Ran(), std::vector<std::string>{"one"});
  auto stats = queue_->stats();
  EXPECT_EQ(stats.started, 1u);
  EXPECT_EQ(stats.queued + stats.running + stats.rejected + stats.expired, 0u);
}

// Past max_queued a task is refused at once, with Retry-After, and its work
// never runs; the ones queued run once the pool is free.
TEST_F(AdmissionQueueTest, FullQueueRefusesAtOnceWithRetryAfter) {
  Make(2);
  Submit("a", "running", 0);
  ASSERT_TRUE(WaitRunning(1));
  Submit("a", "q1");
  Submit("a", "q2");
  ASSERT_TRUE(WaitQueued(2));
  Submit("a", "refused");
  ASSERT_TRUE(WaitDone(1)) << "a refusal must not wait for the pool";
  auto refused = Find("refused");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->outcome, Outcome::kRejected);
  // 1 running + 2 queued, 400 ms each, one at a time: 1.2 s → 2 s.
  EXPECT_EQ(refused->retry_after, 2s);
  EXPECT_EQ(queue_->stats().rejected, 1u);
  Open();
  ASSERT_TRUE(WaitDone(4));
  EXPECT_EQ(Ran(), (std::vector<std::string>{"running", "q1", "q2"}));
  std::string text = metrics_.Render();
  EXPECT_NE(text.find("disco_admission_rejected_total{queue=\"test\"} 1\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("disco_admission_started_total{queue=\"test\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("disco_admission_queued{queue=\"test\"} 0\n"), std::string::npos);
}

// max_queued 0: the bound is what the threads can start within max_wait at
// the measured run time, and it follows that time. At the expected 400 ms a
// run and 1 s to wait, one thread can start 3; runs that take next to
// nothing raise the bound, so the same burst is no longer refused.
TEST_F(AdmissionQueueTest, DerivedBoundFollowsTheMeasuredRunTime) {
  Make(0, 1000ms);
  EXPECT_EQ(queue_->stats().max_queued, 3u);
  Submit("a", "running", 0);
  ASSERT_TRUE(WaitRunning(1));
  for (const char* name : {"q1", "q2", "q3"}) Submit(std::string(name), name);
  ASSERT_TRUE(WaitQueued(3));
  Submit("d", "refused");
  ASSERT_TRUE(WaitDone(1));
  EXPECT_EQ(Find("refused")->outcome, Outcome::kRejected);
  Open(0);
  ASSERT_TRUE(WaitDone(5));

  // Ten quick runs pull the average from 400 ms towards 0.
  for (std::size_t i = 0; i < 10; ++i) {
    Submit("a", "quick" + std::to_string(i));
    ASSERT_TRUE(WaitDone(6 + i));
  }
  const std::size_t grown = queue_->stats().max_queued;
  EXPECT_GE(grown, 20u) << "the bound did not follow the faster runs";
  Submit("a", "held", 1);
  ASSERT_TRUE(WaitRunning(1));
  for (int i = 0; i < 10; ++i) Submit("k" + std::to_string(i), "burst" + std::to_string(i));
  ASSERT_TRUE(WaitQueued(10));
  Open(1);
  ASSERT_TRUE(WaitDone(26));
  EXPECT_EQ(queue_->stats().rejected, 1u) << "only the first burst's extra task was refused";
}

// A full queue makes room for a client with nothing queued by refusing the
// newest task of the client with the most queued.
TEST_F(AdmissionQueueTest, FullQueuePushesOutTheLongestLanesNewestTask) {
  Make(3);
  Submit("flood", "running", 0);
  ASSERT_TRUE(WaitRunning(1));
  for (const char* name : {"f1", "f2", "f3"}) Submit("flood", name);
  ASSERT_TRUE(WaitQueued(3));
  Submit("alice", "a1");
  ASSERT_TRUE(WaitDone(1));
  EXPECT_EQ(Find("f3")->outcome, Outcome::kRejected) << "the flood's newest task makes room";
  Submit("bob", "b1");  // flood 2, alice 1, bob 0: flood again
  ASSERT_TRUE(WaitDone(2));
  EXPECT_EQ(Find("f2")->outcome, Outcome::kRejected);
  // flood 1, alice 1, bob 1: nobody has two more than carol; carol is refused.
  Submit("carol", "c1");
  ASSERT_TRUE(WaitDone(3));
  EXPECT_EQ(Find("c1")->outcome, Outcome::kRejected);
  Open();
  // Seven tasks: four run, three refused. Waiting for six let Ran() be read
  // before b1 ran (CI's sanitize run, stop 35).
  ASSERT_TRUE(WaitDone(7));
  EXPECT_EQ(Ran(), (std::vector<std::string>{"running", "f1", "a1", "b1"}));
  EXPECT_EQ(queue_->stats().rejected, 3u);
}

// Waiting tasks start round-robin among keys, oldest first within a key,
// after the first task of each key in order of arrival.
TEST_F(AdmissionQueueTest, StartsOneTaskPerKeyInTurn) {
  Make(16);
  Submit("a", "running", 0);
  ASSERT_TRUE(WaitRunning(1));
  std::size_t n = 0;
  for (auto [key, name] : std::vector<std::pair<std::string, std::string>>{{"a", "a1"},
                                                                           {"a", "a2"},
                                                                           {"a", "a3"},
                                                                           {"a", "a4"},
                                                                           {"b", "b1"},
                                                                           {"b", "b2"},
                                                                           {"c", "c1"}}) {
    Submit(key, name);
    ASSERT_TRUE(WaitQueued(++n));
  }
  Open();
  ASSERT_TRUE(WaitDone(8));
  EXPECT_EQ(Ran(), (std::vector<std::string>{"running", "a1", "b1", "c1", "a2", "b2", "a3", "a4"}));
}

// A client with nothing waiting goes before the clients with a backlog
// (plain round-robin would put it behind one task of each): it waits only
// for the task running.
TEST_F(AdmissionQueueTest, AClientWithNothingWaitingGoesFirst) {
  Make(16);
  Submit("flood", "f0", 0);
  ASSERT_TRUE(WaitRunning(1));
  Submit("flood", "f1", 1);
  Submit("flood", "f2");
  Submit("flood", "f3");
  ASSERT_TRUE(WaitQueued(3));
  Open(0);  // f0 ends; f1 starts (and blocks): the flood has had its first turn
  ASSERT_TRUE(WaitQueued(2));
  Submit("alice", "a1");
  ASSERT_TRUE(WaitQueued(3));
  Open(1);
  ASSERT_TRUE(WaitDone(5));
  EXPECT_EQ(Ran(), (std::vector<std::string>{"f0", "f1", "a1", "f2", "f3"}));
}

// A task not started within max_wait is dropped without running when the
// pool frees up; the others still run.
TEST_F(AdmissionQueueTest, DropsTasksThatWaitedPastTheirDeadline) {
  Make(8, 100ms);
  Submit("a", "running", 0);
  ASSERT_TRUE(WaitRunning(1));
  Submit("a", "stale");
  ASSERT_TRUE(WaitQueued(1));
  offset_ = 60ms;
  Submit("b", "fresh");
  ASSERT_TRUE(WaitQueued(2));
  offset_ = 120ms;  // past "stale"'s deadline (100 ms), not "fresh"'s (160 ms)
  Open();
  ASSERT_TRUE(WaitDone(3));
  EXPECT_EQ(Find("stale")->outcome, Outcome::kExpired);
  EXPECT_GE(Find("stale")->retry_after, 1s);
  EXPECT_EQ(Find("fresh")->outcome, Outcome::kRan);
  EXPECT_EQ(Ran(), (std::vector<std::string>{"running", "fresh"}));
  EXPECT_EQ(queue_->stats().expired, 1u);
  EXPECT_NE(metrics_.Render().find("disco_admission_expired_total{queue=\"test\"} 1\n"),
            std::string::npos);
}

// A dropped task is answered at its deadline, while the pool is still busy
// and nothing else happens (a timer, not the next arrival or completion).
TEST_F(AdmissionQueueTest, AnswersADroppedTaskAtItsDeadline) {
  Make(8, 150ms, /*real_clock=*/true);
  Submit("a", "running", 0);
  ASSERT_TRUE(WaitRunning(1));
  const auto submitted = std::chrono::steady_clock::now();
  Submit("b", "dropped");
  ASSERT_TRUE(WaitDone(1));
  const auto took = std::chrono::steady_clock::now() - submitted;
  EXPECT_EQ(Find("dropped")->outcome, Outcome::kExpired);
  EXPECT_GE(took, 140ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(queue_->stats().running, 1u) << "the pool is still busy";
  Open();
  ASSERT_TRUE(WaitDone(2));
  EXPECT_EQ(Ran(), std::vector<std::string>{"running"});
}

// The caller's own deadline wins when earlier; one already passed is
// answered at once, even when the pool is free.
TEST_F(AdmissionQueueTest, HonoursTheCallersDeadline) {
  Make(8, 10s);
  Submit("a", "late", false, start_ - 1ms);
  ASSERT_TRUE(WaitDone(1));
  EXPECT_EQ(Find("late")->outcome, Outcome::kExpired);

  Submit("a", "running", 0);
  ASSERT_TRUE(WaitRunning(1));
  Submit("b", "hurried", false, start_ + 50ms);
  ASSERT_TRUE(WaitQueued(1));
  offset_ = 80ms;
  Submit("c", "arrival sweeps");  // an arrival finds the expired task too
  ASSERT_TRUE(WaitDone(2));
  EXPECT_EQ(Find("hurried")->outcome, Outcome::kExpired);
  Open();
  ASSERT_TRUE(WaitDone(4));
  EXPECT_EQ(Ran(), (std::vector<std::string>{"running", "arrival sweeps"}));
}

// Work that throws: the exception reaches the caller and the slot is freed.
TEST_F(AdmissionQueueTest, RethrowsAndFreesTheSlot) {
  Make(4);
  std::atomic<int> caught{0};
  // Captures by reference only: the lambda outlives its coroutines here.
  auto throwing = [&]() -> Awaitable<void> {
    try {
      co_await queue_->Run("a", [] { throw std::runtime_error("boom"); });
    } catch (const std::runtime_error&) {
      caught.fetch_add(1);
    }
  };
  for (int i = 0; i < 3; ++i) asio::co_spawn(ioc_, throwing(), asio::detached);
  ASSERT_TRUE(testing::WaitFor([&] { return caught.load() == 3; }, 5s));
  ASSERT_TRUE(WaitRunning(0));
  Submit("a", "after");
  ASSERT_TRUE(WaitDone(1));
  EXPECT_EQ(Find("after")->outcome, Outcome::kRan);
}

}  // namespace
}  // namespace disco::http
