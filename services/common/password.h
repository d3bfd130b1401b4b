// Password hashing with bcrypt ($2b$, libxcrypt), compatible with hashes made
// by Python's bcrypt package and other $2a$/$2b$/$2y$ implementations.
//
// bcrypt reads at most 72 bytes of a password. Passwords of at most 72 bytes
// are hashed as they are (a plain $2b$ hash any bcrypt library verifies).
// Longer ones (the services accept up to 128 characters) are first reduced to
// base64(HMAC-SHA256(key = the hash's own "$2b$NN$<salt>", password)), 44
// bytes, so that every byte counts, and stored as "$disco-hmac" followed by
// the bcrypt hash ("$disco-hmac$2b$12$..."). Keyed by the salt, the pre-hash
// is different for every stored hash: an unsalted digest of the password from
// another site is not a password here and cannot be tested against our hashes.
//
// Still verified: hashes made before the marker, whose long passwords were
// pre-hashed as base64(SHA-256(password)); for those, that digest logs in as
// the password itself, so NeedsRehash tells the caller to replace them.
//
// Thread safety: all functions may run on any number of threads at once
// (per-thread scratch space). Hash and Verify are slow on purpose (cost 12 ≈
// 0.25 s): call them on a BlockingPool, never on an I/O thread.
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

// True when `hash` (either scheme above) is a hash of `password`, compared in
// constant time. Any malformed hash is false.
bool VerifyPassword(std::string_view password, std::string_view hash);

// True when `hash`, already verified against `password`, uses the old
// unsalted pre-hash: hash the password again with HashPassword and store that.
// Cheap (no bcrypt).
bool NeedsRehash(std::string_view password, std::string_view hash);

}  // namespace disco::service
