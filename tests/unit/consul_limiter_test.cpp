// RequestLimiter (the Consul backend's lanes): at most `limit` permits,
// waiters served first come first served, and a waiter whose request is
// cancelled leaves the queue at once, not at the next poll.
#include "registry/consul/consul_limiter.h"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "registry/consul/consul_http.h"

namespace disco::consul {
namespace {

namespace asio = boost::asio;
using Permit = RequestLimiter::Permit;

// Acquires a permit and keeps it in `out` (so the test decides when it goes).
void Spawn(asio::io_context& io, RequestLimiter& limiter, CancelSlot* slot,
           std::optional<Permit>& out, std::vector<int>* order = nullptr, int id = 0) {
  asio::co_spawn(
      io,
      [&limiter, slot, &out, order, id]() -> asio::awaitable<void> {
        auto permit = co_await limiter.Acquire(slot);
        if (order && permit.granted()) order->push_back(id);
        out.emplace(std::move(permit));
      },
      asio::detached);
}

TEST(RequestLimiterTest, GrantsUpToTheLimitThenQueuesInOrder) {
  asio::io_context io;
  RequestLimiter limiter(2);
  std::vector<std::optional<Permit>> permits(4);
  std::vector<int> order;
  for (int i = 0; i < 4; ++i) Spawn(io, limiter, nullptr, permits[i], &order, i);
  io.poll();
  EXPECT_EQ(order, (std::vector<int>{0, 1}));
  EXPECT_EQ(limiter.in_flight(), 2u);
  EXPECT_EQ(limiter.waiting(), 2u);

  permits[1].reset();  // its slot goes to the longest waiter
  io.poll();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  permits[0].reset();
  io.poll();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
  permits[2].reset();
  permits[3].reset();
  EXPECT_EQ(limiter.in_flight(), 0u);
}

TEST(RequestLimiterTest, ACancelledWaiterLeavesTheQueueAtOnce) {
  asio::io_context io;
  RequestLimiter limiter(1);
  CancelSlot slot(io);
  std::optional<Permit> held, waiting;
  Spawn(io, limiter, nullptr, held);
  Spawn(io, limiter, &slot, waiting);
  io.poll();
  ASSERT_TRUE(held && held->granted());
  ASSERT_FALSE(waiting.has_value());
  ASSERT_EQ(limiter.waiting(), 1u);

  slot.Cancel();
  // Only the handlers ready now run (no timer could fire): the cancel
  // itself wakes the waiter.
  io.poll();
  ASSERT_TRUE(waiting.has_value()) << "the cancelled waiter still waits";
  EXPECT_FALSE(waiting->granted());
  EXPECT_EQ(limiter.waiting(), 0u);
  EXPECT_EQ(limiter.in_flight(), 1u);  // the held permit only

  held.reset();
  EXPECT_EQ(limiter.in_flight(), 0u);
}

}  // namespace
}  // namespace disco::consul
