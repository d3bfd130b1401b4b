// KeepAlivePool: tasks run at their delays on a few threads, Remove stops a
// task for good (waiting for a run in progress), and thousands of tasks
// share the pool's threads.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "fixture/util.h"
#include "registry/etcd/etcd_keepalive_pool.h"

namespace disco::etcd {
namespace {

using namespace std::chrono_literals;

TEST(KeepAlivePoolTest, RunsEachTaskAgainAfterTheDelayItReturns) {
  KeepAlivePool pool(2);
  std::atomic<int> runs{0};
  const auto start = std::chrono::steady_clock::now();
  const auto id = pool.Add(20ms, [&] {
    runs.fetch_add(1);
    return 20ms;
  });
  EXPECT_TRUE(testing::WaitFor([&] { return runs.load() >= 5; }, 5s, 1ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms) << "ran before its delay";
  pool.Remove(id);
  const int after = runs.load();
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(runs.load(), after) << "ran after Remove returned";
}

TEST(KeepAlivePoolTest, RemoveWaitsForARunInProgress) {
  KeepAlivePool pool(2);
  std::atomic<bool> inside{false}, done{false};
  const auto id = pool.Add(0ms, [&] {
    inside = true;
    std::this_thread::sleep_for(200ms);
    done = true;
    return 1h;
  });
  ASSERT_TRUE(testing::WaitFor([&] { return inside.load(); }, 5s, 1ms));
  pool.Remove(id);
  EXPECT_TRUE(done.load());
}

// The slow task holds its thread until the fast one has run five times, so
// the check waits on an event, not on how much a sleep let happen.
TEST(KeepAlivePoolTest, ASlowTaskDoesNotHoldUpTheOthers) {
  // Declared before the pool, which joins its threads when destroyed, and
  // released by a guard destroyed before it: a failed check cannot leave
  // the slow task spinning on a dead flag.
  std::atomic<int> fast{0};
  std::atomic<bool> slow_inside{false}, release{false};
  KeepAlivePool pool(2);
  testing::OnScopeExit release_on_exit([&] { release = true; });
  const auto slow = pool.Add(0ms, [&] {
    slow_inside = true;
    while (!release.load()) std::this_thread::sleep_for(1ms);
    return 1h;
  });
  ASSERT_TRUE(testing::WaitFor([&] { return slow_inside.load(); }, 5s, 1ms));
  const auto quick = pool.Add(10ms, [&] {
    fast.fetch_add(1);
    return 10ms;
  });
  EXPECT_TRUE(testing::WaitFor([&] { return fast.load() >= 5; }, 5s, 1ms))
      << "the second thread should have kept running the fast task";
  release = true;
  pool.Remove(quick);
  pool.Remove(slow);
}

TEST(KeepAlivePoolTest, ThousandsOfTasksShareTheThreads) {
  KeepAlivePool pool(4);
  std::atomic<int> runs{0};
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 5000; ++i) {
    ids.push_back(pool.Add(std::chrono::milliseconds(i % 50), [&] {
      runs.fetch_add(1);
      return 50ms;
    }));
  }
  EXPECT_TRUE(testing::WaitFor([&] { return runs.load() >= 15000; }, 10s, 5ms)) << runs.load();
  for (auto id : ids) pool.Remove(id);
}

}  // namespace
}  // namespace disco::etcd
