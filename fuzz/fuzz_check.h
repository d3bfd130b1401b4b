// What every fuzz target uses: the input as text, and a check that aborts
// (so libFuzzer saves the input as a crash) when a property fails.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace disco::fuzz {

inline std::string_view AsText(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Prints `what` and aborts. libFuzzer then reports the crash and writes the
// input to crash-<sha1> (or the -artifact_prefix directory).
[[noreturn]] inline void Fail(std::string_view what) {
  std::fprintf(stderr, "\n==disco-fuzz== property failed: %.*s\n", static_cast<int>(what.size()),
               what.data());
  std::abort();
}

inline void Check(bool ok, std::string_view what) {
  if (!ok) Fail(what);
}

// `part` lies inside `whole` (views the parsers hand out must).
inline bool Within(std::string_view part, std::string_view whole) {
  if (part.empty()) return true;
  const auto begin = reinterpret_cast<std::uintptr_t>(whole.data());
  const auto at = reinterpret_cast<std::uintptr_t>(part.data());
  return at >= begin && at + part.size() <= begin + whole.size();
}

}  // namespace disco::fuzz
