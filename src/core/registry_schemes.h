// How ParseRegistryUrl reads the part after "<scheme>://": the syntax of
// each scheme MakeRegistry knows. One table holds the schemes, their syntax
// and their factories (src/registry/registry_factory.cpp, where the
// backends are); the URL parser asks it through this header.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace disco::detail {

struct SchemeSyntax {
  std::uint16_t default_port = 0;  // 0: an address must give its port
  bool named = false;              // "<scheme>://<name>" instead of addresses
};

// nullopt for a scheme nobody registered.
std::optional<SchemeSyntax> LookupSchemeSyntax(std::string_view scheme);

// "etcd, consul, memory, dns[, yours]": for error messages.
std::string KnownSchemes();

}  // namespace disco::detail
