// TLS settings loaded from PEM files, for a server (its certificate, and the
// CA its clients' certificates must chain to when mutual TLS is on) or for a
// client (the CA it trusts, and the certificate it presents when it has one).
//
// Reloadable: Reload() reads the files again and, only when all of them load
// and the key matches the certificate, makes the new settings current.
// Connections take the current settings when they start and keep them, so
// connections already open finish on the old certificate; a reload that
// fails leaves the old settings in force (and says why).
//
// Identity: a caller that discovered an instance of service S checks, after
// the handshake, that the instance's certificate is S's (PeerHasIdentity):
// a DNS name S among its subject alternative names, or a URI SAN whose last
// path segment is S (SPIFFE IDs: spiffe://example.org/ns/shop/sa/S; an ID
// with an empty, "." or ".." segment or a percent escape names nobody). The
// trust domain is not checked: trust a CA that signs only for your own.
// An instance someone wrote into the registry by hand then gets no requests.
//
// Thread safety: all methods may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "disco/error.h"

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace disco::tls {

struct Files {
  // PEM. Server: required. Client: optional, presented when the server asks
  // (mutual TLS); both or neither.
  std::string cert_file{};
  std::string key_file{};
  // Server: when set, clients must present a certificate chaining to this CA
  // (mutual TLS). Client: the CAs server certificates must chain to; empty:
  // the system's (OpenSSL's default paths).
  std::string ca_file{};
};

enum class Role { kServer, kClient };

class Config {
 public:
  // Errors (kInvalidArgument, naming the file and OpenSSL's reason): a file
  // that cannot be read or parsed, a key that does not match its
  // certificate, a server without certificate or key, only one of the two.
  static Result<std::shared_ptr<Config>> Load(Role role, Files files);

  ~Config();
  Config(const Config&) = delete;
  Config& operator=(const Config&) = delete;

  // Reads the files again; on success the new settings are current. On
  // failure (same errors as Load) the old stay in force.
  Result<void> Reload();

  // Reloads when a file changed (its modification time or size) since the
  // last load or check; true when it reloaded. A reload that fails is an
  // error (the old settings stay) and is not tried again until a file
  // changes again, so a bad file is reported once, not at every check.
  Result<bool> ReloadIfChanged();

  // Makes context() call ReloadIfChanged() itself, at most once per
  // `interval` (zero, the default: never), for users without a thread of
  // their own to do it, such as the registries' clients: a check is three
  // stat() calls, a reload reads the files; a failed reload is logged.
  void CheckFilesEvery(std::chrono::milliseconds interval);
  std::chrono::milliseconds check_interval() const;

  // The settings in force, for a connection about to start. Never null.
  std::shared_ptr<boost::asio::ssl::context> context() const;

  Role role() const;
  const Files& files() const;
  // Grows by one per successful Reload (1 after Load).
  std::uint64_t generation() const;
  // Client: a client certificate is presented. Server: clients must present one.
  bool mutual() const;

 private:
  struct Impl;
  explicit Config(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Whether the PEM/DER certificate `x509` (an X509*, opaque here) names
// service `identity` as described above.
bool PeerHasIdentity(const void* x509, std::string_view identity);

// OpenSSL's reason for the last failure on this thread ("" when none),
// and clears the thread's error queue.
std::string LastSslError();

}  // namespace disco::tls
