#include "tls_settings.h"

#include <sys/stat.h>

#include <string>
#include <vector>

#include "disco/stop_signals.h"
#include "logging.h"

namespace disco::service {

namespace {

Error FlagError(std::string_view flags, const Error& error) {
  return Error{ErrorCode::kInvalidArgument, std::string(flags) + ": " + error.message};
}

// The files' modification times (and sizes): a change to any means reload.
std::vector<std::pair<timespec, off_t>> Stamps(const TlsSettings& settings) {
  std::vector<std::pair<timespec, off_t>> out;
  for (const auto* config : {settings.server.get(), settings.client.get()}) {
    if (config == nullptr) continue;
    const auto& files = config->files();
    for (const auto* path : {&files.cert_file, &files.key_file, &files.ca_file}) {
      struct stat info {};
      if (!path->empty() && ::stat(path->c_str(), &info) == 0)
        out.emplace_back(info.st_mtim, info.st_size);
      else
        out.emplace_back(timespec{}, -1);
    }
  }
  return out;
}

bool Same(const std::vector<std::pair<timespec, off_t>>& a,
          const std::vector<std::pair<timespec, off_t>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].first.tv_sec != b[i].first.tv_sec || a[i].first.tv_nsec != b[i].first.tv_nsec ||
        a[i].second != b[i].second)
      return false;
  }
  return true;
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
  auto stamps = Stamps(settings_);
  auto since_check = std::chrono::milliseconds(0);
  while (!stop_.load()) {
    const bool hangup = WaitForReloadSignal(std::min(kSlice, check_interval));
    since_check += std::min(kSlice, check_interval);
    if (!hangup && since_check < check_interval) continue;
    since_check = {};
    auto now = Stamps(settings_);
    if (!hangup && Same(now, stamps)) continue;
    stamps = std::move(now);
    const char* why = hangup ? "SIGHUP" : "the files changed";
    for (auto* config : {settings_.server.get(), settings_.client.get()}) {
      if (config == nullptr) continue;
      const char* role = config->role() == tls::Role::kServer ? "server" : "client";
      if (auto reloaded = config->Reload(); reloaded) {
        Log().info("TLS {} certificate reloaded ({}): {}", role, why,
                   config->files().cert_file.empty() ? config->files().ca_file
                                                     : config->files().cert_file);
      } else {
        Log().error("TLS {} reload failed ({}), keeping the certificate in force: {}", role, why,
                    reloaded.error().message);
      }
    }
  }
}

}  // namespace disco::service
