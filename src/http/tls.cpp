#include "disco/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <vector>

#include <boost/asio/ssl.hpp>

#include "disco/detail/asio.h"
#include "http/tls_session_cache.h"
#include "util/log.h"

namespace disco::tls {

namespace ssl = boost::asio::ssl;

std::string LastSslError() {
  std::string out;
  while (const unsigned long code = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    // "error:0A000086:SSL routines::certificate verify failed": the reason
    // after the last colon is what a person needs.
    std::string_view reason(text);
    if (const auto colon = reason.rfind(':'); colon != std::string_view::npos)
      reason.remove_prefix(colon + 1);
    if (!out.empty()) out += "; ";
    out += reason;
  }
  return out;
}

namespace {

Error Bad(std::string message) { return Error{ErrorCode::kInvalidArgument, std::move(message)}; }

// Readable at all? OpenSSL's own message for a missing file is "system lib".
Result<void> CheckReadable(std::string_view what, const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::unexpected(Bad("cannot read the TLS " + std::string(what) + " '" + path +
                                      "': " + std::strerror(errno)));
  return {};
}

// The passphrase of an encrypted key: there is none to give. Without this
// OpenSSL's default asks for one on the terminal (or reads stdin), which
// hangs a service started in a shell at start and its reload thread (or a
// registry client's event loop) at a reload. Records that it was asked.
int NoPassphrase(char*, int, int, void* asked) {
  if (asked != nullptr) *static_cast<bool*>(asked) = true;
  return -1;
}

Result<void> LoadChainAndKey(ssl::context& context, const Files& files) {
  if (auto readable = CheckReadable("certificate", files.cert_file); !readable) return readable;
  if (auto readable = CheckReadable("key", files.key_file); !readable) return readable;
  SSL_CTX* native = context.native_handle();
  bool passphrase_asked = false;
  SSL_CTX_set_default_passwd_cb(native, NoPassphrase);
  SSL_CTX_set_default_passwd_cb_userdata(native, &passphrase_asked);
  struct Forget {  // the flag lives in this frame only
    SSL_CTX* native;
    ~Forget() { SSL_CTX_set_default_passwd_cb_userdata(native, nullptr); }
  } forget{native};
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(native, files.cert_file.c_str()) != 1)
    return std::unexpected(Bad("the TLS certificate '" + files.cert_file +
                               "' is not a PEM certificate: " + LastSslError()));
  if (SSL_CTX_use_PrivateKey_file(native, files.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    const std::string reason = LastSslError();
    if (passphrase_asked)
      return std::unexpected(Bad("the TLS key '" + files.key_file +
                                 "' is encrypted (it has a passphrase), and disco reads only "
                                 "unencrypted keys: decrypt it (openssl pkey -in KEY -out "
                                 "PLAIN) and protect the file instead (mode 600)"));
    // OpenSSL compares the key with the certificate as it takes the key.
    if (reason.find("mismatch") != std::string::npos)
      return std::unexpected(Bad("the TLS key '" + files.key_file +
                                 "' does not match the certificate '" + files.cert_file + "'"));
    return std::unexpected(
        Bad("the TLS key '" + files.key_file + "' is not a PEM private key: " + reason));
  }
  if (SSL_CTX_check_private_key(native) != 1)
    return std::unexpected(Bad("the TLS key '" + files.key_file +
                               "' does not match the certificate '" + files.cert_file + "'"));
  return {};
}

Result<void> LoadCa(ssl::context& context, const std::string& ca_file) {
  if (auto readable = CheckReadable("CA file", ca_file); !readable) return readable;
  ERR_clear_error();
  if (SSL_CTX_load_verify_locations(context.native_handle(), ca_file.c_str(), nullptr) != 1)
    return std::unexpected(Bad("the TLS CA file '" + ca_file +
                               "' holds no PEM certificate: " + LastSslError()));
  return {};
}

Result<std::shared_ptr<ssl::context>> Build(Role role, const Files& files) {
  const bool server = role == Role::kServer;
  if (server && (files.cert_file.empty() || files.key_file.empty()))
    return std::unexpected(Bad("a TLS server needs a certificate and a key file"));
  if (files.cert_file.empty() != files.key_file.empty())
    return std::unexpected(Bad("a TLS certificate needs its key and a key its certificate: give "
                               "both files or neither"));
  auto context = std::make_shared<ssl::context>(server ? ssl::context::tls_server
                                                       : ssl::context::tls_client);
  SSL_CTX* native = context->native_handle();
  // TLS 1.2 and 1.3 only; no renegotiation (a client could make the server
  // do handshake work on an open connection at will).
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  if (!files.cert_file.empty()) {
    if (auto loaded = LoadChainAndKey(*context, files); !loaded)
      return std::unexpected(loaded.error());
  }
  if (server) {
    // Resumed sessions must be tied to this server's settings, and OpenSSL
    // refuses to resume without an id context when it verifies clients.
    static constexpr unsigned char kSessionContext[] = "disco";
    SSL_CTX_set_session_id_context(native, kSessionContext, sizeof kSessionContext - 1);
    if (!files.ca_file.empty()) {
      if (auto loaded = LoadCa(*context, files.ca_file); !loaded)
        return std::unexpected(loaded.error());
      SSL_CTX_set_client_CA_list(native, SSL_load_client_CA_file(files.ca_file.c_str()));
      SSL_CTX_set_verify(native, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
  } else {
    if (files.ca_file.empty()) {
      if (SSL_CTX_set_default_verify_paths(native) != 1)
        return std::unexpected(Bad("cannot load the system's CA certificates: " + LastSslError()));
    } else if (auto loaded = LoadCa(*context, files.ca_file); !loaded) {
      return std::unexpected(loaded.error());
    }
    SSL_CTX_set_verify(native, SSL_VERIFY_PEER, nullptr);
    // New connections to an instance resume the session of an earlier one.
    http::detail::EnableTlsSessionCache(native);
  }
  return context;
}

// What tells that a file changed: its modification time, its size, and its
// inode (a file renamed into place, as certificate managers do, is a new
// inode even when written within the clock's few-millisecond granularity).
struct Stamp {
  timespec mtime{};
  off_t size = -1;
  ino_t inode = 0;
  bool operator==(const Stamp& other) const {
    return mtime.tv_sec == other.mtime.tv_sec && mtime.tv_nsec == other.mtime.tv_nsec &&
           size == other.size && inode == other.inode;
  }
};
using Stamps = std::vector<Stamp>;

Stamps StampsOf(const Files& files) {
  Stamps out;
  for (const auto* path : {&files.cert_file, &files.key_file, &files.ca_file}) {
    struct stat info {};
    if (!path->empty() && ::stat(path->c_str(), &info) == 0)
      out.push_back({info.st_mtim, info.st_size, info.st_ino});
    else
      out.push_back({});
  }
  return out;
}

std::int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct Config::Impl {
  Role role;
  Files files;
  mutable std::mutex mu;  // guards `current` (std::atomic<shared_ptr> is a lock in GCC 12 too)
  std::shared_ptr<ssl::context> current;
  std::atomic<std::uint64_t> generation{1};
  std::mutex reload_mu;  // one reload at a time; guards `stamps`
  Stamps stamps;         // the files as last loaded or checked
  std::atomic<std::int64_t> check_every_ns{0};  // CheckFilesEvery; 0: never
  std::atomic<std::int64_t> next_check_ns{0};
};

Config::Config(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Config::~Config() = default;

Result<std::shared_ptr<Config>> Config::Load(Role role, Files files) {
  auto context = Build(role, files);
  if (!context) return std::unexpected(context.error());
  auto impl = std::make_unique<Impl>();
  impl->role = role;
  impl->files = std::move(files);
  impl->current = std::move(*context);
  impl->stamps = StampsOf(impl->files);
  return std::shared_ptr<Config>(new Config(std::move(impl)));
}

Result<void> Config::Reload() {
  std::lock_guard reload(impl_->reload_mu);
  impl_->stamps = StampsOf(impl_->files);
  auto context = Build(impl_->role, impl_->files);
  if (!context) return std::unexpected(context.error());
  {
    std::lock_guard lock(impl_->mu);
    impl_->current = std::move(*context);
  }
  impl_->generation.fetch_add(1, std::memory_order_relaxed);
  return {};
}

Result<bool> Config::ReloadIfChanged() {
  {
    std::lock_guard reload(impl_->reload_mu);
    if (StampsOf(impl_->files) == impl_->stamps) return false;
  }
  // A file written between the check and the reload is read by the reload.
  if (auto reloaded = Reload(); !reloaded) return std::unexpected(reloaded.error());
  return true;
}

void Config::CheckFilesEvery(std::chrono::milliseconds interval) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(interval).count();
  impl_->check_every_ns.store(ns);
  impl_->next_check_ns.store(NowNs() + ns);
}

std::chrono::milliseconds Config::check_interval() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::nanoseconds(impl_->check_every_ns.load()));
}

std::shared_ptr<ssl::context> Config::context() const {
  if (const auto every = impl_->check_every_ns.load(std::memory_order_relaxed); every > 0) {
    // One caller per interval does the check; the others go on.
    const auto now = NowNs();
    auto due = impl_->next_check_ns.load(std::memory_order_relaxed);
    if (now >= due && impl_->next_check_ns.compare_exchange_strong(due, now + every)) {
      auto* self = const_cast<Config*>(this);
      if (auto reloaded = self->ReloadIfChanged(); !reloaded) {
        log::Get().error("TLS reload of '{}' failed, keeping the settings in force: {}",
                         impl_->files.cert_file.empty() ? impl_->files.ca_file
                                                        : impl_->files.cert_file,
                         reloaded.error().message);
      } else if (*reloaded) {
        log::Get().info("TLS settings reloaded: the files changed ({})",
                        impl_->files.cert_file.empty() ? impl_->files.ca_file
                                                       : impl_->files.cert_file);
      }
    }
  }
  std::lock_guard lock(impl_->mu);
  return impl_->current;
}

Role Config::role() const { return impl_->role; }
const Files& Config::files() const { return impl_->files; }
std::uint64_t Config::generation() const {
  return impl_->generation.load(std::memory_order_relaxed);
}
bool Config::mutual() const {
  return impl_->role == Role::kServer ? !impl_->files.ca_file.empty()
                                      : !impl_->files.cert_file.empty();
}

namespace {

// "trust-domain/seg/.../identity": the last segment is the service. An ID
// with an empty, "." or ".." segment or a percent escape is malformed in
// SPIFFE and never names anyone (no "x/other/../user-service" tricks).
bool SpiffeNames(std::string_view id, std::string_view identity) {
  if (id.find('%') != std::string_view::npos) return false;
  std::string_view last;
  std::size_t segments = 0;
  while (!id.empty()) {
    const auto slash = id.find('/');
    const std::string_view segment = id.substr(0, slash);
    if (segment.empty() || segment == "." || segment == "..") return false;
    last = segment;
    ++segments;
    id = slash == std::string_view::npos ? std::string_view() : id.substr(slash + 1);
  }
  return segments >= 2 && last == identity;  // a trust domain and a path
}

}  // namespace

bool PeerHasIdentity(const void* x509, std::string_view identity) {
  if (x509 == nullptr || identity.empty()) return false;
  auto* cert = static_cast<X509*>(const_cast<void*>(x509));
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return false;
  bool found = false;
  for (int i = 0; i < sk_GENERAL_NAME_num(names) && !found; ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_DNS && name->type != GEN_URI) continue;
    const ASN1_IA5STRING* text = name->type == GEN_DNS ? name->d.dNSName : name->d.uniformResourceIdentifier;
    std::string_view value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)),
                           static_cast<std::size_t>(ASN1_STRING_length(text)));
    if (name->type == GEN_DNS) {
      found = value == identity;
    } else if (value.starts_with("spiffe://")) {
      found = SpiffeNames(value.substr(9), identity);
    }
  }
  GENERAL_NAMES_free(names);
  return found;
}

}  // namespace disco::tls
