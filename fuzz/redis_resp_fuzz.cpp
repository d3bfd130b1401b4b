// The RESP2 reply reader (services/common/redis_resp.h: ParseReply), which
// reads whatever the Redis server (or anything listening on its port) sends.
// Properties: a complete reply consumes at least one byte and no more than
// the input; written back in RESP it reads again as the same reply, taking
// exactly what was written; every shorter prefix of what it consumed is
// incomplete, never a different reply (replies arrive in pieces); a stream of
// replies is read one after another until nothing complete is left.
#include <string>

#include "common/redis_resp.h"
#include "fuzz_check.h"

namespace disco::fuzz {
namespace {

using service::redis::ParseOutcome;
using service::redis::ParseReply;
using service::redis::Reply;
using Status = ParseOutcome::Status;

void Write(const Reply& reply, std::string& out) {
  switch (reply.type) {
    case Reply::Type::kStatus:
      out += "+" + reply.text + "\r\n";
      break;
    case Reply::Type::kError:
      out += "-" + reply.text + "\r\n";
      break;
    case Reply::Type::kInteger:
      out += ":" + std::to_string(reply.integer) + "\r\n";
      break;
    case Reply::Type::kNil:
      out += "$-1\r\n";
      break;
    case Reply::Type::kBulk:
      out += "$" + std::to_string(reply.text.size()) + "\r\n" + reply.text + "\r\n";
      break;
    case Reply::Type::kArray:
      out += "*" + std::to_string(reply.elements.size()) + "\r\n";
      for (const auto& element : reply.elements) Write(element, out);
      break;
  }
}

bool Same(const Reply& a, const Reply& b) {
  if (a.type != b.type || a.text != b.text || a.integer != b.integer ||
      a.elements.size() != b.elements.size())
    return false;
  for (std::size_t i = 0; i < a.elements.size(); ++i) {
    if (!Same(a.elements[i], b.elements[i])) return false;
  }
  return true;
}

}  // namespace
}  // namespace disco::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace disco::fuzz;
  std::string_view input = AsText(data, size);
  for (int n = 0; n < 64 && !input.empty(); ++n) {
    Reply reply;
    auto outcome = ParseReply(input, reply);
    if (outcome.status == Status::kMalformed) {
      Check(!outcome.error.empty(), "a malformed reply without a reason");
      return 0;
    }
    if (outcome.status == Status::kIncomplete) return 0;
    Check(outcome.consumed > 0 && outcome.consumed <= input.size(), "consumed out of range");
    std::string written;
    Write(reply, written);
    Reply again;
    auto reread = ParseReply(written, again);
    Check(reread.status == Status::kComplete && reread.consumed == written.size(),
          "a reply written back does not read whole");
    Check(Same(reply, again), "a reply written back reads differently");
    if (outcome.consumed <= 512) {
      for (std::size_t cut = 0; cut < outcome.consumed; ++cut) {
        Reply partial;
        Check(ParseReply(input.substr(0, cut), partial).status == Status::kIncomplete,
              "a prefix of a reply is not incomplete");
      }
    }
    input.remove_prefix(outcome.consumed);
  }
  return 0;
}
