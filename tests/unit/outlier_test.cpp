// Outlier detection with an injected clock: thresholds, definitive refusals,
// the ejected share for small services, growing and decaying ejection times.
#include "disco/outlier.h"

#include <gtest/gtest.h>

#include <vector>

namespace disco {
namespace {

using namespace std::chrono_literals;

class OutlierTest : public ::testing::Test {
 protected:
  SnapshotConstPtr Endpoints(int n) {
    std::vector<ServiceInstance> instances;
    for (int i = 0; i < n; ++i) {
      ServiceInstance instance;
      instance.service = "svc";
      instance.id = "e" + std::to_string(i);
      instance.host = "127.0.0.1";
      instance.port = static_cast<std::uint16_t>(1000 + i);
      instances.push_back(instance);
    }
    return MakeSnapshot("svc", instances, nullptr, 1);
  }

  std::unique_ptr<OutlierDetector> Detector(SnapshotConstPtr snapshot, OutlierOptions options = {}) {
    auto detector = std::make_unique<OutlierDetector>("svc", options, [this] { return now_; });
    detector->Update(snapshot);
    detector->SetListener([this](const OutlierEvent& e) { events_.push_back(e); });
    return detector;
  }

  void Fail(OutlierDetector& d, const Endpoint& e, int times, CallOutcome outcome = CallOutcome::kServerError) {
    for (int i = 0; i < times; ++i) d.Record(e, outcome);
  }

  std::chrono::steady_clock::time_point now_{std::chrono::seconds(1000)};
  std::vector<OutlierEvent> events_;
};

TEST_F(OutlierTest, EjectsAfterConsecutiveFailuresOnly) {
  auto snapshot = Endpoints(4);
  auto d = Detector(snapshot);
  const auto& e = snapshot->endpoints[0];
  Fail(*d, e, 4);
  EXPECT_FALSE(e.ejected());
  d->Record(e, CallOutcome::kSuccess);  // resets the streak
  Fail(*d, e, 4);
  EXPECT_FALSE(e.ejected());
  Fail(*d, e, 1);
  EXPECT_TRUE(e.ejected());
  EXPECT_EQ(d->ejections_total(), 1u);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(events_[0].kind, OutlierEvent::Kind::kEjected);
  EXPECT_EQ(events_[0].duration, 30s);
  EXPECT_EQ(e.stats->failures(), 9u);
  EXPECT_EQ(e.stats->successes(), 1u);
}

TEST_F(OutlierTest, RefusedConnectionEjectsAtOnce) {
  auto snapshot = Endpoints(2);
  auto d = Detector(snapshot);
  d->Record(snapshot->endpoints[1], CallOutcome::kConnectRefused);
  EXPECT_TRUE(snapshot->endpoints[1].ejected());
  EXPECT_EQ(events_.at(0).cause, CallOutcome::kConnectRefused);
}

TEST_F(OutlierTest, NeverEjectsTheLastEndpointInThePicks) {
  auto one = Endpoints(1);
  auto d1 = Detector(one);
  Fail(*d1, one->endpoints[0], 20, CallOutcome::kConnectRefused);
  EXPECT_FALSE(one->endpoints[0].ejected()) << "a single endpoint is never ejected";

  auto two = Endpoints(2);
  auto d2 = Detector(two);
  d2->Record(two->endpoints[0], CallOutcome::kConnectRefused);
  d2->Record(two->endpoints[1], CallOutcome::kConnectRefused);
  EXPECT_TRUE(two->endpoints[0].ejected());
  EXPECT_FALSE(two->endpoints[1].ejected()) << "one of two may go, never both";
}

TEST_F(OutlierTest, MaxEjectedShareIsRespected) {
  auto snapshot = Endpoints(10);
  auto d = Detector(snapshot, OutlierOptions{.max_ejected_percent = 30});
  for (const auto& e : snapshot->endpoints) d->Record(e, CallOutcome::kConnectRefused);
  EXPECT_EQ(d->ejected_now(), 3u);
}

TEST_F(OutlierTest, EjectionTimeGrowsWithRepeatsUpToTheCapThenDecays) {
  auto snapshot = Endpoints(3);
  auto d = Detector(snapshot, OutlierOptions{.base_ejection = 10s, .max_ejection = 25s});
  const auto& e = snapshot->endpoints[0];
  std::vector<std::chrono::milliseconds> durations;
  for (int round = 0; round < 3; ++round) {
    d->Record(e, CallOutcome::kConnectRefused);
    ASSERT_TRUE(e.ejected());
    durations.push_back(events_.back().duration);
    now_ += durations.back() - 1ms;
    d->Sweep();
    EXPECT_TRUE(e.ejected()) << "still ejected just before its time";
    now_ += 1ms;
    d->Sweep();
    EXPECT_FALSE(e.ejected()) << "back exactly when its time is over";
  }
  EXPECT_EQ(durations, (std::vector<std::chrono::milliseconds>{10s, 20s, 25s}));
  EXPECT_EQ(d->returns_total(), 3u);
  // Healthy for two base intervals: the multiplier decays by two.
  now_ += 10s;
  d->Sweep();
  now_ += 10s;
  d->Sweep();
  EXPECT_EQ(e.stats->times_ejected, 1u);
  d->Record(e, CallOutcome::kConnectRefused);
  EXPECT_EQ(events_.back().duration, 20s);
}

TEST_F(OutlierTest, RecordSweepsOnItsOwn) {
  auto snapshot = Endpoints(2);
  auto d = Detector(snapshot, OutlierOptions{.base_ejection = 1s});
  d->Record(snapshot->endpoints[0], CallOutcome::kConnectRefused);
  ASSERT_TRUE(snapshot->endpoints[0].ejected());
  now_ += 2s;
  d->Record(snapshot->endpoints[1], CallOutcome::kSuccess);
  EXPECT_FALSE(snapshot->endpoints[0].ejected());
}

TEST_F(OutlierTest, EndpointsNotInTheCurrentSnapshotAreIgnored) {
  auto current = Endpoints(3);
  auto d = Detector(current);
  auto stranger = Endpoints(3);  // same ids, different stats objects
  d->Record(stranger->endpoints[0], CallOutcome::kConnectRefused);
  EXPECT_FALSE(stranger->endpoints[0].ejected());
}

// The one mapping from a failed attempt to the call's error: a reset is its
// own error, not a malformed answer (issue 13).
TEST(CallOutcomeTest, EachFailureMapsToItsErrorCode) {
  EXPECT_EQ(ErrorCodeFor(CallOutcome::kConnectRefused), ErrorCode::kUnavailable);
  EXPECT_EQ(ErrorCodeFor(CallOutcome::kConnectFailed), ErrorCode::kUnavailable);
  EXPECT_EQ(ErrorCodeFor(CallOutcome::kTimeout), ErrorCode::kTimeout);
  EXPECT_EQ(ErrorCodeFor(CallOutcome::kReset), ErrorCode::kReset);
  EXPECT_EQ(ErrorCodeFor(CallOutcome::kServerError), ErrorCode::kMalformed);
  EXPECT_EQ(ErrorCodeName(ErrorCode::kReset), "reset");
}

}  // namespace
}  // namespace disco
