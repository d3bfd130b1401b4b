// RESP2, the Redis wire protocol: commands out, replies in.
//
// EncodeCommand writes a command as an array of bulk strings (the only form
// Redis requires of clients). ParseReply reads one reply from the front of a
// buffer that may hold less than a whole reply (replies arrive in pieces),
// several, or garbage: a malformed or oversized reply is an error, never a
// crash or an unbounded allocation (limits below). RESP3-only types are not
// accepted: the client never sends HELLO 3, so Redis answers in RESP2.
//
// Thread safety: pure functions over their arguments.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "disco/error.h"

namespace disco::service::redis {

struct Reply {
  enum class Type { kStatus, kError, kInteger, kBulk, kNil, kArray };
  Type type = Type::kNil;
  std::string text;             // kStatus, kError, kBulk
  std::int64_t integer = 0;     // kInteger
  std::vector<Reply> elements;  // kArray (a nil array is kNil)

  bool is_error() const { return type == Type::kError; }
};

// Bounds on what the parser accepts (our replies are a few bytes: a script's
// small array, an integer, a status).
inline constexpr std::size_t kMaxBulkBytes = 1024 * 1024;
inline constexpr std::size_t kMaxArrayElements = 1024;
inline constexpr int kMaxDepth = 8;
inline constexpr std::size_t kMaxLineBytes = 64 * 1024;

struct ParseOutcome {
  enum class Status { kComplete, kIncomplete, kMalformed };
  Status status = Status::kIncomplete;
  std::size_t consumed = 0;  // kComplete: bytes of `input` the reply took
  std::string error{};       // kMalformed: what is wrong
};

// Reads one reply from the start of `input` into `out` (on kComplete).
ParseOutcome ParseReply(std::string_view input, Reply& out);

// Appends `args` as one RESP command ("*N\r\n$len\r\narg\r\n...").
void EncodeCommand(std::string& out, const std::vector<std::string>& args);

}  // namespace disco::service::redis
