// Password hashing with bcrypt ($2b$, libxcrypt), compatible with hashes made
// by Python's bcrypt package and other $2a$/$2b$/$2y$ implementations.
//
// bcrypt reads at most 72 bytes of a password. Longer passwords (the services
// accept up to 128 characters) are first reduced to base64(SHA-256(password)),
// 44 bytes, so that every byte counts; passwords of at most 72 bytes are
// hashed as they are, so hashes made elsewhere verify unchanged.
//
// Thread safety: both functions may run on any number of threads at once
// (per-thread scratch space). Both are slow on purpose (cost 12 ≈ 0.25 s):
// call them on a BlockingPool, never on an I/O thread.
#pragma once

#include <string>
#include <string_view>

#include "disco/error.h"

namespace disco::service {

constexpr int kMinBcryptCost = 4;
constexpr int kMaxBcryptCost = 31;

// REQUIRES: password has no NUL byte. Errors: kInvalidArgument (cost out of
// range, NUL byte), kInternal (libxcrypt failed).
Result<std::string> HashPassword(std::string_view password, int cost);

// True when `hash` is a bcrypt hash of `password`. Any malformed hash is false.
bool VerifyPassword(std::string_view password, std::string_view hash);

}  // namespace disco::service
