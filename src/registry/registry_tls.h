// TLS to a registry (etcd, Consul), from its URL's query parameters or
// their environment twins, one convention for every backend:
//
//   tls=1     TLS with the system's CAs (implied by any of the three below)
//   ca=PATH   the CA the registry's certificate must chain to   (DISCO_REGISTRY_CA)
//   cert=PATH the client certificate, for mutual TLS            (DISCO_REGISTRY_CERT)
//   key=PATH  its private key                                   (DISCO_REGISTRY_KEY)
//   tls_reload=SECONDS  how often the files are checked for a change and
//             re-read (default 10; 0: never), for short-lived certificates:
//             new connections take the new files, open ones keep theirs
//             (etcd: its gRPC channels are made again)
//
// A parameter in the URL wins over its environment twin. The files are
// loaded and checked here (readable, PEM, key matching certificate), so a
// bad one is an error when the registry is made, naming the file.
#pragma once

#include <memory>
#include <string_view>

#include "disco/error.h"
#include "disco/registry_url.h"
#include "disco/tls.h"

namespace disco {

struct RegistryTls {
  // Null: plain. Checks its files every tls_reload (CheckFilesEvery).
  std::shared_ptr<tls::Config> config;
};

// Whether `key` is one of the parameters above (backends accept them).
bool IsRegistryTlsParam(std::string_view key);

// Errors: kInvalidArgument naming the parameter and the file.
Result<RegistryTls> ParseRegistryTls(const RegistryUrl& url);

}  // namespace disco
