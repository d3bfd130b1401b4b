// The one table of registry schemes: the built-in backends and the ones a
// user registers (RegisterRegistryScheme), each with its URL syntax (read by
// ParseRegistryUrl through core/registry_schemes.h) and its factory.
#include <mutex>
#include <vector>

#include "core/registry_schemes.h"
#include "disco/metrics.h"
#include "registry/backends.h"

namespace disco {
namespace {

struct SchemeTable {
  std::mutex mu;
  std::vector<RegistryScheme> schemes;

  SchemeTable() {
    schemes.push_back({"etcd", &MakeEtcdRegistry, 2379, false});
    schemes.push_back({"consul", &MakeConsulRegistry, 8500, false});
    schemes.push_back({"memory", &MakeMemoryRegistry, 0, true});
    // Named: "dns://" alone means the resolv.conf's servers, which an
    // address list cannot express; the backend parses the name itself.
    schemes.push_back({"dns", &MakeDnsRegistry, 53, true});
  }

  // A copy: the factory may run long (it may contact nothing, but a user's
  // might) and must not hold the lock.
  std::optional<RegistryScheme> Find(std::string_view name) {
    std::lock_guard lock(mu);
    for (const auto& scheme : schemes)
      if (scheme.name == name) return scheme;
    return std::nullopt;
  }
};

constexpr std::size_t kBuiltinSchemes = 4;

SchemeTable& Table() {
  static SchemeTable table;
  return table;
}

// RFC 3986 scheme syntax, lower case only (URLs are compared as written).
bool IsSchemeName(std::string_view name) {
  if (name.empty() || name.size() > 32 || !(name[0] >= 'a' && name[0] <= 'z')) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'))
      return false;
  }
  return true;
}

}  // namespace

namespace detail {

std::optional<SchemeSyntax> LookupSchemeSyntax(std::string_view scheme) {
  auto found = Table().Find(scheme);
  if (!found) return std::nullopt;
  return SchemeSyntax{found->default_port, found->named};
}

std::string KnownSchemes() {
  std::string known;
  for (const auto& name : RegistrySchemeNames()) {
    if (!known.empty()) known += ", ";
    known += name;
  }
  return known;
}

}  // namespace detail

std::string_view RegistrationStateName(RegistrationState state) {
  switch (state) {
    case RegistrationState::kActive: return "active";
    case RegistrationState::kRestoring: return "restoring";
    case RegistrationState::kDeregistered: return "deregistered";
  }
  return "unknown";
}

Result<std::unique_ptr<Registry>> MakeRegistry(std::string_view url, const RegistryOptions& options) {
  auto parsed = ParseRegistryUrl(url);
  if (!parsed) return std::unexpected(parsed.error());
  auto scheme = Table().Find(parsed->scheme);
  if (!scheme) {  // unregistered between the two lookups: cannot happen (no unregister)
    return Fail(ErrorCode::kInvalidArgument, "unknown registry scheme '" + parsed->scheme + "'");
  }
  auto made = scheme->make(*parsed, options);
  if (!made) return made;
  if (!*made) {
    return Fail(ErrorCode::kInternal,
                "the factory of registry scheme '" + parsed->scheme + "' made nothing");
  }
  return InstrumentRegistry(std::move(*made), parsed->scheme,
                            options.metrics ? *options.metrics : MetricsRegistry::Default());
}

Result<void> RegisterRegistryScheme(RegistryScheme scheme) {
  if (!IsSchemeName(scheme.name)) {
    return Fail(ErrorCode::kInvalidArgument,
                "registry scheme '" + scheme.name +
                    "' must be a lower-case URL scheme of at most 32 characters ([a-z][a-z0-9+.-]*)");
  }
  if (!scheme.make)
    return Fail(ErrorCode::kInvalidArgument, "registry scheme '" + scheme.name + "' has no factory");
  auto& table = Table();
  std::lock_guard lock(table.mu);
  for (std::size_t i = 0; i < table.schemes.size(); ++i) {
    if (table.schemes[i].name != scheme.name) continue;
    return Fail(ErrorCode::kInvalidArgument,
                "registry scheme '" + scheme.name +
                    (i < kBuiltinSchemes ? "' is built in and cannot be replaced"
                                         : "' is already registered"));
  }
  table.schemes.push_back(std::move(scheme));
  return {};
}

std::vector<std::string> RegistrySchemeNames() {
  auto& table = Table();
  std::lock_guard lock(table.mu);
  std::vector<std::string> names;
  for (const auto& scheme : table.schemes) names.push_back(scheme.name);
  return names;
}

}  // namespace disco
