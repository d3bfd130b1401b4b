// Both sides of a TLS handshake on a connection. Private to src/http.
//
// Server (AcceptTls):
// The first bytes are read before the handshake: a client that speaks plain
// HTTP to a TLS port (a common slip: http:// for https://) gets a 400 whose
// JSON body says so, instead of a handshake failure it cannot read; bytes
// that are neither are closed on. A TLS ClientHello is handed to the
// handshake with the bytes already read.
#pragma once

#include <functional>
#include <string>

#include "disco/http/awaitable.h"
#include "http/connection.h"

namespace disco::tls {
class Config;
}  // namespace disco::tls

namespace disco::http::detail {

enum class TlsAccept {
  kDone,       // TLS is on; the connection's buffer is empty
  kPlaintext,  // plain HTTP arrived: answered 400, to be closed
  kFailed,     // the handshake failed (`reason` says why), or not TLS at all
  kTimeout,    // no handshake by the deadline
  kClosed,     // the client went away first
};

// Ends with the connection's deadline at `deadline`. `reason`: OpenSSL's
// reason for kFailed (a client without certificate at an mTLS port, a
// protocol version it does not share...). `first_bytes` (when set) is
// called once the wait for the client's first bytes is over, whatever its
// outcome: until then the connection is as idle as one waiting for its
// first request, and the server may close it to make room.
Awaitable<TlsAccept> AcceptTls(Connection& connection, const tls::Config& config,
                               Clock::time_point deadline, std::string& reason,
                               std::function<void()> first_bytes);

std::string_view TlsAcceptName(TlsAccept result);

// Client: TLS over the connected `connection` to `host` (a name or an IP
// address), by the connection's deadline. The server's certificate must
// chain to the config's CA and name `host` (DNS or IP SAN); when `identity`
// is not empty it must also name that service (tls::PeerHasIdentity). On
// failure returns false with `error` saying why, naming `address`.
Awaitable<bool> ConnectTls(Connection& connection, const tls::Config& config,
                           std::string_view host, std::string_view identity,
                           std::string_view address, std::string& error);

}  // namespace disco::http::detail
