#include "admission.h"

#include <algorithm>
#include <charconv>
#include <string>

namespace disco::service {

std::string_view ClientKey(const http::Request& request, bool trust_client_address) {
  if (trust_client_address) {
    std::string_view forwarded = request.Header(kClientAddressHeader);
    if (!forwarded.empty() && forwarded.size() <= 64) return forwarded;
  }
  return request.remote_address;
}

http::AdmissionQueue::TimePoint StartBy(const http::Request& request,
                                        http::AdmissionQueue::TimePoint arrived,
                                        std::chrono::microseconds expected_run) {
  std::string_view text = request.Header(kRequestTimeoutHeader);
  std::int64_t ms = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || ms < 1 ||
      ms > 600'000) {
    return http::AdmissionQueue::TimePoint::max();
  }
  // Room for the run twice over: run times vary under load, and work that
  // ends after the caller left was wasted. But never less than half the
  // caller's time to start in: the run time is an estimate, learnt only from
  // work that runs, so one too high (a start-up hash timed on a loaded
  // machine) would otherwise drop every request unrun and never learn better.
  const auto caller = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::milliseconds(ms));
  return arrived + caller - std::min(2 * expected_run, caller / 2);
}

http::Response Overloaded(const http::Admission& admission, std::string_view what) {
  const std::string seconds = std::to_string(admission.retry_after.count());
  std::string message =
      admission.outcome == http::Admission::Outcome::kExpired
          ? "the " + std::string(what) +
                " waited too long for its turn and was not run; retry in " + seconds + " s"
          : "too many " + std::string(what) + "s are waiting; retry in " + seconds + " s";
  auto response = http::Response::Error(503, "overloaded", message);
  response.headers.emplace_back("Retry-After", seconds);
  return response;
}

}  // namespace disco::service
