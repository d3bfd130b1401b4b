#include "redis_resp.h"

#include <charconv>

namespace disco::service::redis {
namespace {

using Status = ParseOutcome::Status;

struct Parser {
  std::string_view in;
  std::size_t pos = 0;
  std::string error{};

  // The line from pos up to CRLF (excluded); advances past the CRLF.
  Status Line(std::string_view& line) {
    auto end = in.find("\r\n", pos);
    if (end == std::string_view::npos) {
      if (in.size() - pos > kMaxLineBytes) return Bad("line too long");
      return Status::kIncomplete;
    }
    if (end - pos > kMaxLineBytes) return Bad("line too long");
    line = in.substr(pos, end - pos);
    pos = end + 2;
    return Status::kComplete;
  }

  Status Bad(std::string why) {
    error = std::move(why);
    return Status::kMalformed;
  }

  static bool Integer(std::string_view text, std::int64_t& value) {
    if (text.empty()) return false;
    const char* begin = text.data();
    if (*begin == '+') return false;  // from_chars refuses it too; be explicit
    auto [end, ec] = std::from_chars(begin, text.data() + text.size(), value);
    return ec == std::errc() && end == text.data() + text.size();
  }

  Status Value(Reply& out, int depth) {
    if (depth > kMaxDepth) return Bad("reply nested too deeply");
    if (pos >= in.size()) return Status::kIncomplete;
    const char type = in[pos++];
    std::string_view line;
    if (auto s = Line(line); s != Status::kComplete) return s;
    switch (type) {
      case '+':
      case '-':
        out.type = type == '+' ? Reply::Type::kStatus : Reply::Type::kError;
        out.text.assign(line);
        return Status::kComplete;
      case ':':
        out.type = Reply::Type::kInteger;
        if (!Integer(line, out.integer)) return Bad("bad integer reply");
        return Status::kComplete;
      case '$': {
        std::int64_t n = 0;
        if (!Integer(line, n) || n < -1) return Bad("bad bulk length");
        if (n == -1) {
          out.type = Reply::Type::kNil;
          return Status::kComplete;
        }
        if (static_cast<std::uint64_t>(n) > kMaxBulkBytes) return Bad("bulk reply too large");
        const auto size = static_cast<std::size_t>(n);
        if (in.size() - pos < size + 2) return Status::kIncomplete;
        if (in.substr(pos + size, 2) != "\r\n") return Bad("bulk reply not ended by CRLF");
        out.type = Reply::Type::kBulk;
        out.text.assign(in.substr(pos, size));
        pos += size + 2;
        return Status::kComplete;
      }
      case '*': {
        std::int64_t n = 0;
        if (!Integer(line, n) || n < -1) return Bad("bad array length");
        if (n == -1) {
          out.type = Reply::Type::kNil;
          return Status::kComplete;
        }
        if (static_cast<std::uint64_t>(n) > kMaxArrayElements) return Bad("array reply too long");
        out.type = Reply::Type::kArray;
        out.elements.clear();
        // Not reserved up front: a header promising 1,024 elements costs
        // nothing until they arrive.
        for (std::int64_t i = 0; i < n; ++i) {
          Reply element;
          if (auto s = Value(element, depth + 1); s != Status::kComplete) return s;
          out.elements.push_back(std::move(element));
        }
        return Status::kComplete;
      }
      default:
        return Bad("unknown reply type byte");
    }
  }
};

}  // namespace

ParseOutcome ParseReply(std::string_view input, Reply& out) {
  Parser parser{input};
  Reply reply;
  Status status = parser.Value(reply, 0);
  if (status == Status::kComplete) {
    out = std::move(reply);
    return {Status::kComplete, parser.pos};
  }
  if (status == Status::kMalformed) return {Status::kMalformed, 0, std::move(parser.error)};
  return {Status::kIncomplete, 0};
}

void EncodeCommand(std::string& out, const std::vector<std::string>& args) {
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (const auto& arg : args) {
    out += '$';
    out += std::to_string(arg.size());
    out += "\r\n";
    out += arg;
    out += "\r\n";
  }
}

}  // namespace disco::service::redis
