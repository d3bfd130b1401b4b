#include "disco/thread_counters.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace disco {
namespace {

void OnThreads(int threads, auto body) {
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(body, t);
  for (auto& thread : pool) thread.join();
}

TEST(ThreadCountersTest, SumsEveryThreadsAdditionsExactlyAndNeverGoesBack) {
  ThreadCounters counters;
  constexpr int kThreads = 6;
  constexpr std::uint64_t kAdds = 200'000;
  std::atomic<bool> done{false};
  std::uint64_t backwards = 0;
  std::thread reader([&] {
    std::uint64_t last = 0;
    while (!done.load()) {
      const std::uint64_t now = counters.Load(1);
      if (now < last) ++backwards;
      last = now;
    }
  });
  OnThreads(kThreads, [&](int) {
    for (std::uint64_t i = 0; i < kAdds; ++i) counters.Add(1);
    counters.Add(2, 7);
  });
  done = true;
  reader.join();
  EXPECT_EQ(counters.Load(1), kThreads * kAdds);
  EXPECT_EQ(counters.Load(2), kThreads * 7u);
  EXPECT_EQ(counters.Load(0), 0u);
  EXPECT_EQ(backwards, 0u) << "a sum read while threads add must never decrease";
}

TEST(ThreadCountersTest, CountsOutliveTheirThreadsAndLaterThreadsAddToThem) {
  ThreadCounters counters;
  for (int round = 0; round < 5; ++round)  // later rounds take over earlier rounds' slabs
    OnThreads(3, [&](int) { counters.Add(0, 10); });
  EXPECT_EQ(counters.Load(0), 150u);
}

TEST(ThreadCountersTest, AReusedBlockStartsAtZero) {
  for (int i = 0; i < 50; ++i) {
    auto counters = std::make_unique<ThreadCounters>();
    for (std::size_t c = 0; c < ThreadCounters::kMax; ++c) {
      ASSERT_EQ(counters->Load(c), 0u) << "iteration " << i << ", counter " << c;
    }
    OnThreads(2, [&](int t) {
      for (std::size_t c = 0; c < ThreadCounters::kMax; ++c) counters->Add(c, 1 + t);
    });
    counters->Add(3, 100);
    // Destroyed here: its block goes back and the next iteration takes it.
  }
}

TEST(ThreadCountersTest, NegativeAdditionsWrapToTheRightTotal) {
  ThreadCounters counters;  // as Gauge uses it: deltas in two's complement
  OnThreads(2, [&](int t) {
    counters.Add(0, static_cast<std::uint64_t>(std::int64_t{-5}));
    if (t == 0) counters.Add(0, 12);
  });
  EXPECT_EQ(static_cast<std::int64_t>(counters.Load(0)), 2);
}

// A thread-local object made before the thread first counts is destroyed
// after the thread's slab was handed back: what it adds then still counts.
struct CountsWhenTheThreadEnds {
  ThreadCounters* counters = nullptr;
  ~CountsWhenTheThreadEnds() {
    if (counters != nullptr) counters->Add(0, 5);
  }
};

TEST(ThreadCountersTest, AdditionsFromLateThreadLocalDestructorsCount) {
  ThreadCounters counters;
  OnThreads(3, [&](int) {
    thread_local CountsWhenTheThreadEnds late;
    late.counters = &counters;
    counters.Add(0, 1);
  });
  EXPECT_EQ(counters.Load(0), 3u * 6u);
}

TEST(ThreadCountersTest, ManyObjectsKeepTheirOwnCounts) {
  std::vector<std::unique_ptr<ThreadCounters>> many;
  for (int i = 0; i < 1000; ++i) many.push_back(std::make_unique<ThreadCounters>());
  OnThreads(2, [&](int) {
    for (std::size_t i = 0; i < many.size(); ++i) many[i]->Add(0, i);
  });
  for (std::size_t i = 0; i < many.size(); ++i) ASSERT_EQ(many[i]->Load(0), 2 * i) << i;
}

}  // namespace
}  // namespace disco
