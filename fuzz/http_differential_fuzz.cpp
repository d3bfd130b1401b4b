// The fast HTTP parser against Beast on the same bytes: wherever the fast
// parser says kDone, Beast must accept the message and read the same start
// line, fields, body, size and keep-alive (the property the server and the
// client rely on to use it in Beast's place; simple_head.h). The comparison
// is the unit test's (tests/fixture/http_differential.h). An input starting
// with "HTTP/" is an answer, anything else a request.
#include <string>

#include "fixture/http_differential.h"
#include "fuzz_check.h"
#include "simple_message_check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace disco;
  const std::string_view text = fuzz::AsText(data, size);
  const bool answer = text.starts_with("HTTP/");
  for (const auto& limits : fuzz::kLimits) {
    const std::string diff =
        answer ? http::detail::DisagreementWithBeast<false>(text, limits.header, limits.body)
               : http::detail::DisagreementWithBeast<true>(text, limits.header, limits.body);
    if (!diff.empty()) fuzz::Fail(diff);
  }
  return 0;
}
