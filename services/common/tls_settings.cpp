#include "tls_settings.h"

#include <string>
#include <vector>

#include "disco/stop_signals.h"
#include "logging.h"

namespace disco::service {

namespace {

Error FlagError(std::string_view flags, const Error& error) {
  return Error{ErrorCode::kInvalidArgument, std::string(flags) + ": " + error.message};
}

}  // namespace

Result<TlsSettings> LoadTlsSettings(const ServiceConfig& config) {
  TlsSettings settings;
  if (!config.tls_client_ca.empty() && config.tls_cert.empty())
    return Fail(ErrorCode::kInvalidArgument,
                "--tls-client-ca: mutual TLS needs the server's own --tls-cert and --tls-key");
  if (!config.tls_cert.empty() || !config.tls_key.empty()) {
    auto server = tls::Config::Load(tls::Role::kServer,
                                    {config.tls_cert, config.tls_key, config.tls_client_ca});
    if (!server) return std::unexpected(FlagError("--tls-cert/--tls-key", server.error()));
    settings.server = std::move(*server);
  }
  if (!config.tls_ca.empty()) {
    auto client =
        tls::Config::Load(tls::Role::kClient, {config.tls_cert, config.tls_key, config.tls_ca});
    if (!client) return std::unexpected(FlagError("--tls-ca", client.error()));
    settings.client = std::move(*client);
  }
  return settings;
}

TlsReloader::TlsReloader(TlsSettings settings, std::chrono::milliseconds check_interval)
    : settings_(std::move(settings)) {
  if (settings_.server || settings_.client)
    thread_ = std::thread([this, check_interval] { Run(check_interval); });
}

TlsReloader::~TlsReloader() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void TlsReloader::Run(std::chrono::milliseconds check_interval) {
  // Short waits, so that stopping never waits for a whole interval.
  constexpr auto kSlice = std::chrono::milliseconds(200);
  auto since_check = std::chrono::milliseconds(0);
  while (!stop_.load()) {
    const bool hangup = WaitForReloadSignal(std::min(kSlice, check_interval));
    since_check += std::min(kSlice, check_interval);
    if (!hangup && since_check < check_interval) continue;
    since_check = {};
    const char* why = hangup ? "SIGHUP" : "the files changed";
    for (auto* config : {settings_.server.get(), settings_.client.get()}) {
      if (config == nullptr) continue;
      const char* role = config->role() == tls::Role::kServer ? "server" : "client";
      Result<bool> reloaded = true;
      if (hangup) {
        if (auto forced = config->Reload(); !forced) reloaded = std::unexpected(forced.error());
      } else {
        reloaded = config->ReloadIfChanged();
      }
      if (!reloaded) {
        Log().error("TLS {} reload failed ({}), keeping the certificate in force: {}", role, why,
                    reloaded.error().message);
      } else if (*reloaded) {
        Log().info("TLS {} certificate reloaded ({}): {}", role, why,
                   config->files().cert_file.empty() ? config->files().ca_file
                                                     : config->files().cert_file);
      }
    }
  }
}

}  // namespace disco::service
