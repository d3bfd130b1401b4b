#include "http/tls_stream.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <new>

#include <boost/asio/ssl/error.hpp>

namespace disco::http::detail {
namespace {

// One TLS record's worth of ciphertext (16 KiB of payload and its overhead):
// what one socket read takes at most.
constexpr std::size_t kInputSize = 17 * 1024;
// A head and body together up to this size go out as one record.
constexpr std::size_t kJoinLimit = 16 * 1024;

// OpenSSL's error queue must be empty before a TLS call for SSL_get_error()
// to be right; it almost always is, and a peek is cheaper than a clear.
void ClearErrors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

}  // namespace

// The BIO OpenSSL reads and writes through: reads take the records the
// stream read from the socket; writes are one non-blocking send each.
struct TlsStreamBio {
  static int Write(BIO* bio, const char* data, int size) {
    auto* tls = static_cast<TlsStream*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    // The socket's descriptor now, not one remembered: -1 once the
    // connection was closed (a deadline), never another connection's.
    const int fd = tls->socket_.native_handle();
    for (;;) {
      // Through syscall(), as detail::WriteNow sends (no cancellation-point
      // bookkeeping); MSG_NOSIGNAL: a closed peer is an error, not SIGPIPE.
      const long sent = ::syscall(SYS_sendto, fd, data, static_cast<std::size_t>(size),
                                  MSG_NOSIGNAL, nullptr, 0);
      if (sent >= 0) return static_cast<int>(sent);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        BIO_set_retry_write(bio);
      } else {
        tls->send_errno_ = errno;
      }
      return -1;
    }
  }

  static int Read(BIO* bio, char* out, int size) {
    auto* tls = static_cast<TlsStream*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    const std::size_t have = tls->in_end_ - tls->in_begin_;
    if (have == 0) {
      if (tls->in_ended_) return 0;
      BIO_set_retry_read(bio);
      return -1;
    }
    const std::size_t n = std::min(have, static_cast<std::size_t>(std::max(size, 0)));
    std::memcpy(out, tls->in_.get() + tls->in_begin_, n);
    tls->in_begin_ += n;
    if (tls->in_begin_ == tls->in_end_) tls->in_begin_ = tls->in_end_ = 0;
    return static_cast<int>(n);
  }

  static long Control(BIO*, int command, long, void*) {
    // Writes are sent at once: nothing to flush. Everything else (kTLS,
    // pending counts, datagram controls) is "not supported".
    return command == BIO_CTRL_FLUSH ? 1 : 0;
  }

  static int Create(BIO* bio) {
    BIO_set_init(bio, 1);
    return 1;
  }

  static const BIO_METHOD* Method() {
    static const BIO_METHOD* const method = [] {
      BIO_METHOD* made = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "disco tls");
      if (made == nullptr || BIO_meth_set_write(made, Write) != 1 ||
          BIO_meth_set_read(made, Read) != 1 || BIO_meth_set_ctrl(made, Control) != 1 ||
          BIO_meth_set_create(made, Create) != 1)
        throw std::bad_alloc();
      return made;
    }();
    return method;
  }
};

TlsStream::TlsStream(Socket& socket, asio::ssl::context& context) : socket_(socket) {
  ssl_ = SSL_new(context.native_handle());
  if (ssl_ == nullptr) throw std::bad_alloc();
  BIO* bio = BIO_new(TlsStreamBio::Method());
  if (bio == nullptr) {
    SSL_free(ssl_);
    throw std::bad_alloc();
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // one reference, owned by ssl_ from here
  // OpenSSL may be handed the rest of a record it began elsewhere in memory
  // (WriteNow's buffers, then async_write's). Its buffers are given back
  // between records, as asio::ssl::stream and nginx have it: an idle
  // keep-alive connection then holds no 34 KiB of them.
  SSL_set_mode(ssl_, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
}

TlsStream::~TlsStream() { SSL_free(ssl_); }

void TlsStream::Preload(asio::const_buffer bytes) {
  const std::size_t n = std::min(bytes.size(), kInputSize - in_end_);
  if (n == 0) return;
  std::memcpy(InputSpace().data(), bytes.data(), n);
  in_end_ += n;
}

asio::mutable_buffer TlsStream::InputSpace() {
  if (!in_) in_ = std::make_unique<char[]>(kInputSize);
  return asio::buffer(in_.get() + in_end_, kInputSize - in_end_);
}

TlsStream::Step TlsStream::Outcome(int ok, boost::system::error_code& ec) {
  ec = {};
  if (ok > 0) return Step::kDone;
  switch (SSL_get_error(ssl_, ok)) {
    case SSL_ERROR_WANT_READ: return Step::kNeedInput;
    case SSL_ERROR_WANT_WRITE: return Step::kNeedOutput;
    case SSL_ERROR_ZERO_RETURN: ec = asio::error::eof; break;  // the peer's close_notify
    case SSL_ERROR_SYSCALL:
      if (send_errno_ != 0)
        ec.assign(send_errno_, asio::error::get_system_category());
      else if (in_ended_)
        ec = asio::ssl::error::stream_truncated;
      else
        ec = asio::ssl::error::unspecified_system_error;
      break;
    default: {
      // OpenSSL's first error says why (what asio::ssl::stream reports).
      const unsigned long error = ERR_get_error();
#if defined(SSL_R_UNEXPECTED_EOF_WHILE_READING)
      if (ERR_GET_REASON(error) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ec = asio::ssl::error::stream_truncated;
        break;
      }
#endif
      if (error == 0)
        ec = asio::ssl::error::unspecified_system_error;
      else
        ec.assign(static_cast<int>(error), asio::error::get_ssl_category());
      break;
    }
  }
  ERR_clear_error();
  return Step::kDone;
}

TlsStream::Step TlsStream::Handshake(boost::system::error_code& ec) {
  ClearErrors();
  send_errno_ = 0;
  return Outcome(SSL_do_handshake(ssl_), ec);
}

TlsStream::Step TlsStream::Read(asio::mutable_buffer out, std::size_t& n,
                                boost::system::error_code& ec) {
  n = 0;
  ec = {};
  if (out.size() == 0) return Step::kDone;
  ClearErrors();
  send_errno_ = 0;
  const int ok = SSL_read_ex(ssl_, out.data(), out.size(), &n);
  return Outcome(ok, ec);
}

TlsStream::Step TlsStream::Write(std::array<asio::const_buffer, 2>& buffers, std::size_t& total,
                                 boost::system::error_code& ec) {
  ec = {};
  if (write_broken_) {
    ec = asio::error::operation_aborted;
    return Step::kDone;
  }
  for (;;) {
    const std::size_t size = buffers[0].size() + buffers[1].size();
    if (size == 0) return Step::kDone;
    asio::const_buffer piece = buffers[0].size() != 0 ? buffers[0] : buffers[1];
    if (joining_ || (buffers[0].size() != 0 && buffers[1].size() != 0 && size <= kJoinLimit)) {
      // A head and its body in one record: one send, and the peer decrypts
      // once. (A write that waited keeps its joined bytes: same as before.)
      if (!joining_) {
        joined_.assign(static_cast<const char*>(buffers[0].data()), buffers[0].size());
        joined_.append(static_cast<const char*>(buffers[1].data()), buffers[1].size());
        joining_ = true;
      }
      piece = asio::buffer(joined_);
    }
    std::size_t written = 0;
    ClearErrors();
    send_errno_ = 0;
    const Step step = Outcome(SSL_write_ex(ssl_, piece.data(), piece.size(), &written), ec);
    write_waiting_ = step != Step::kDone;
    if (write_waiting_) return step;  // the same piece is written again
    if (joining_) {
      joining_ = false;
      if (joined_.capacity() > 4096) std::string().swap(joined_);
    }
    if (ec) {
      write_broken_ = true;
      return Step::kDone;
    }
    total += written;
    const std::size_t first = std::min(written, buffers[0].size());
    buffers[0] += first;
    buffers[1] += written - first;
  }
}

bool TlsStream::WriteNow(std::array<asio::const_buffer, 2>& buffers,
                         boost::system::error_code& ec) {
  std::size_t total = 0;
  return Write(buffers, total, ec) == Step::kDone;
}

}  // namespace disco::http::detail
