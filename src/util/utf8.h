// UTF-8 well-formedness (RFC 3629): what JSON text must be. Bytes from the
// network or a registry key may be anything; they are checked here before
// they reach a JSON writer (nlohmann's dump() throws on them).
#pragma once

#include <cstddef>
#include <string_view>

namespace disco::util {

// The length of the well-formed UTF-8 sequence starting at text[i] (1 for
// ASCII; no overlong forms, no surrogates, nothing past U+10FFFF), or 0.
std::size_t Utf8SequenceAt(std::string_view text, std::size_t i);

bool IsValidUtf8(std::string_view text);

}  // namespace disco::util
