#include "http/tls_handshake.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/ssl.hpp>

#include "disco/tls.h"
#include "http/tls_session_cache.h"

namespace disco::http::detail {

namespace {

constexpr unsigned char kTlsHandshakeRecord = 0x16;

constexpr std::string_view kPlaintextBody =
    "{\"error\":\"tls_required\",\"message\":\"this port speaks HTTPS: "
    "send the request with https:// instead of http://\"}";

const std::string& PlaintextAnswer() {
  static const std::string answer =
      "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: " +
      std::to_string(kPlaintextBody.size()) + "\r\nConnection: close\r\n\r\n" +
      std::string(kPlaintextBody);
  return answer;
}

bool LooksLikeHttp(unsigned char first) { return first >= 'A' && first <= 'Z'; }

}  // namespace

std::string_view TlsAcceptName(TlsAccept result) {
  switch (result) {
    case TlsAccept::kDone: return "done";
    case TlsAccept::kPlaintext: return "plaintext";
    case TlsAccept::kFailed: return "handshake";
    case TlsAccept::kTimeout: return "timeout";
    case TlsAccept::kClosed: return "closed";
  }
  return "handshake";
}

Awaitable<TlsAccept> AcceptTls(Connection& connection, const tls::Config& config,
                               Clock::time_point deadline, std::string& reason,
                               std::function<void()> first_bytes) {
  connection.SetDeadline(deadline);
  boost::system::error_code ec;
  auto& buffer = connection.buffer();
  const std::size_t n = co_await connection.socket().async_read_some(
      buffer.prepare(4096), asio::redirect_error(http::use_awaitable, ec));
  if (first_bytes) first_bytes();
  if (ec) co_return connection.timed_out() ? TlsAccept::kTimeout : TlsAccept::kClosed;
  buffer.commit(n);
  const auto first = *static_cast<const unsigned char*>(buffer.data().data());
  if (first != kTlsHandshakeRecord) {
    if (!LooksLikeHttp(first)) {
      reason = "the client sent neither TLS nor HTTP";
      co_return TlsAccept::kFailed;
    }
    buffer.consume(buffer.size());
    co_await asio::async_write(connection.socket(), asio::buffer(PlaintextAnswer()),
                               asio::redirect_error(http::use_awaitable, ec));
    co_return TlsAccept::kPlaintext;
  }
  auto& stream = connection.StartTls(config.context());
  ERR_clear_error();
  stream.Preload(buffer.data());
  buffer.consume(buffer.size());
  co_await stream.async_handshake(asio::ssl::stream_base::server,
                                  asio::redirect_error(http::use_awaitable, ec));
  if (!ec) co_return TlsAccept::kDone;
  if (connection.timed_out()) co_return TlsAccept::kTimeout;
  reason = ec.message();
  if (const long verify = SSL_get_verify_result(stream.native_handle()); verify != X509_V_OK)
    reason += std::string(" (client certificate: ") + X509_verify_cert_error_string(verify) + ")";
  co_return TlsAccept::kFailed;
}

Awaitable<bool> ConnectTls(Connection& connection, const tls::Config& config,
                           std::string_view host, std::string_view identity,
                           std::string_view address, std::string& error) {
  auto& stream = connection.StartTls(config.context());
  SSL* ssl = stream.native_handle();
  const std::string host_text(host);
  boost::system::error_code ec;
  asio::ip::make_address(host_text, ec);
  const bool is_ip = !ec;
  // OpenSSL checks the name during verification, so a mismatch fails the
  // handshake with its own clear reason (X509_V_ERR_HOSTNAME_MISMATCH).
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  // Names come from the SANs only (no fallback to the subject's CN, which
  // RFC 6125 deprecates), and no partial wildcards ("us*.example").
  X509_VERIFY_PARAM_set_hostflags(
      param, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host_text.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, host_text.c_str(), host_text.size());
    SSL_set_tlsext_host_name(ssl, host_text.c_str());  // SNI
  }
  // Kept per identity and address: a session offered here was verified for
  // this host and, when it carries one, this identity.
  OfferTlsSession(ssl, std::string(identity) + "|" + std::string(address));
  ERR_clear_error();
  ec = {};
  co_await stream.async_handshake(asio::ssl::stream_base::client,
                                  asio::redirect_error(http::use_awaitable, ec));
  if (ec) {
    if (connection.timed_out()) {
      error = "TLS handshake with " + std::string(address) + " timed out";
    } else {
      error = "TLS handshake with " + std::string(address) + " failed: " + ec.message();
      if (const long verify = SSL_get_verify_result(ssl); verify != X509_V_OK)
        error += std::string(" (server certificate: ") + X509_verify_cert_error_string(verify) +
                 ")";
    }
    ForgetTlsSession(ssl);
    co_return false;
  }
  if (!identity.empty()) {
    // A resumed session carries the server's certificate too: checked alike.
    X509* peer = SSL_get1_peer_certificate(ssl);
    const bool named = tls::PeerHasIdentity(peer, identity);
    X509_free(peer);
    if (!named) {
      ForgetTlsSession(ssl);
      error = "the instance at " + std::string(address) + " is not '" + std::string(identity) +
              "': its certificate does not name the service (DNS or spiffe:// URI SAN); it may "
              "have been put into the registry by someone else";
      co_return false;
    }
  }
  co_return true;
}

}  // namespace disco::http::detail
