// Client-side TLS session resumption. Private to src/http.
//
// A new connection to an instance the client has spoken TLS with before
// offers the session it got then (a TLS 1.3 ticket or a TLS 1.2 session
// id), so the server skips the certificate exchange and the key agreement's
// signatures: the handshake is paid per instance, not per connection.
//
// Sessions are kept per client ssl::context, so a reload (a new context, a
// new tls::Config generation) starts with none: no session verified under
// an old CA is offered after a rotation. Within a context a session is
// kept under "identity|address" and offered only for that same pair, so it
// was verified for that host and identity; a resumed session still carries
// the server's certificate, and ConnectTls checks the identity on it again.
// At most kMaxSessions per context (least recently stored go first).
#pragma once

#include <cstddef>
#include <string>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace disco::http::detail {

inline constexpr std::size_t kMaxTlsSessions = 1024;

// Turns resumption on for a new client context (before any SSL uses it).
void EnableTlsSessionCache(SSL_CTX* context);

// Before the handshake on `ssl` (of a context given to EnableTlsSessionCache):
// offers the session kept under `key`, if any, and keeps the ones the server
// issues on this connection under `key`.
void OfferTlsSession(SSL* ssl, std::string key);

// Drops the session kept under `ssl`'s key (its peer failed a check).
void ForgetTlsSession(SSL* ssl);

// Sessions kept by `context` (tests).
std::size_t TlsSessionsKept(SSL_CTX* context);

}  // namespace disco::http::detail
