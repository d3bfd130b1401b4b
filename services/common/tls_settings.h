// The TLS of a demo service from its --tls-* flags, and the thread that
// keeps it current: the files are re-read on SIGHUP and when one of them
// changes (checked every --tls-reload-check-ms), as short-lived certificates
// from an internal CA need. A reload that fails is logged and the old
// certificate stays in force; connections already open keep theirs.
//
// Thread safety: TlsSettings is filled once in main(); the reloader runs on
// its own thread (tls::Config::Reload is thread-safe).
#pragma once

#include <atomic>
#include <memory>
#include <thread>

#include "config.h"
#include "disco/tls.h"

namespace disco::service {

struct TlsSettings {
  std::shared_ptr<tls::Config> server;  // --tls-cert, --tls-key, --tls-client-ca; null: HTTP
  std::shared_ptr<tls::Config> client;  // --tls-ca (+ our certificate); null: calls over HTTP
};

// Errors (kInvalidArgument, naming the flag and the file): a file that
// cannot be loaded, a key that does not match, --tls-client-ca without
// --tls-cert.
Result<TlsSettings> LoadTlsSettings(const ServiceConfig& config);

class TlsReloader {
 public:
  // Does nothing when `settings` holds no config.
  TlsReloader(TlsSettings settings, std::chrono::milliseconds check_interval);
  ~TlsReloader();  // stops the thread
  TlsReloader(const TlsReloader&) = delete;
  TlsReloader& operator=(const TlsReloader&) = delete;

 private:
  void Run(std::chrono::milliseconds check_interval);

  TlsSettings settings_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace disco::service
