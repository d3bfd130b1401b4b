// The strict fast HTTP parser on requests (src/http/simple_head.h, the
// server's first try on every message): never reads outside the input,
// and whatever it takes is a well-formed message within the limits.
// Agreement with Beast is http_differential_fuzz.cpp's job.
#include "simple_message_check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace disco;
  const std::string_view text = fuzz::AsText(data, size);
  for (const auto& limits : fuzz::kLimits) {
    http::detail::SimpleMessage out;
    if (http::detail::ParseSimpleRequest(text, limits.header, limits.body, out) ==
        http::detail::SimpleParse::kDone)
      fuzz::CheckSimpleMessage(text, limits, out);
  }
  return 0;
}
