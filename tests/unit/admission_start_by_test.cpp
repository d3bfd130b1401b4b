// StartBy: by when a service's bcrypt must start for the gateway's caller.
#include "common/admission.h"

#include <gtest/gtest.h>

namespace disco::service {
namespace {

using namespace std::chrono_literals;
using TimePoint = http::AdmissionQueue::TimePoint;

// `value` a literal: the request's headers are views.
http::Request WithTimeout(std::string_view value) {
  http::Request request;
  request.headers.emplace_back(kRequestTimeoutHeader, value);
  return request;
}

TEST(AdmissionStartByTest, LeavesTwiceTheRunTimeForTheRun) {
  const TimePoint arrived{};
  EXPECT_EQ(StartBy(WithTimeout("5000"), arrived, 300ms), arrived + 4400ms);
  EXPECT_EQ(StartBy(http::Request{}, arrived, 300ms), TimePoint::max());
  EXPECT_EQ(StartBy(WithTimeout("soon"), arrived, 300ms), TimePoint::max());
}

// A start-up bcrypt timed on a loaded machine (3 s; they then take 300 ms)
// and the gateway's 5 s: the work must still get a chance to start, or
// every registration and login is dropped unrun, and the estimate, learnt
// only from work that ran, never comes down (scripts/demo.sh --tls on a
// busy machine: every call 503 "waited too long for its turn").
TEST(AdmissionStartByTest, AnEstimateTooHighStillLetsWorkStart) {
  const TimePoint arrived{};
  EXPECT_EQ(StartBy(WithTimeout("5000"), arrived, 3s), arrived + 2500ms);
  EXPECT_GT(StartBy(WithTimeout("1"), arrived, 3s), arrived);
}

}  // namespace
}  // namespace disco::service
