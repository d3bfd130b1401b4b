// disco::Error and disco::Result — how every fallible library call reports failure.
//
// Failure that is normal in a distributed system (a registry that is down, a
// malformed value, a timeout) is a value, never an exception: public calls
// return Result<T> = std::expected<T, Error>. "Nothing found" is not an error:
// an empty service is an empty list or snapshot.
//
// Thread safety: plain values; safe to copy between threads.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace disco {

enum class ErrorCode {
  kInvalidArgument,   // the caller passed something malformed (bad URL, bad name)
  kUnavailable,       // the registry (or peer) could not be reached
  kTimeout,           // it was reached but did not answer in time
  kNotFound,          // the named thing does not exist
  kAlreadyExists,
  kPermissionDenied,  // ACL token missing or rejected
  kMalformed,         // the peer answered with something we cannot parse
  kReset,             // the peer closed or reset the connection before a complete answer
  kCancelled,         // the operation was stopped by its owner
  kInternal,          // a bug or an unexpected answer; the message says what
};

std::string_view ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message{};

  // "unavailable: etcd://127.0.0.1:2379: connection refused"
  std::string ToString() const;
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> Fail(ErrorCode code, std::string message) {
  return std::unexpected<Error>(Error{code, std::move(message)});
}

}  // namespace disco
