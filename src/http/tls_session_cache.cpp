#include "http/tls_session_cache.h"

#include <openssl/ssl.h>

#include <list>
#include <mutex>
#include <unordered_map>

namespace disco::http::detail {

namespace {

// The sessions of one client context, in its ex_data; freed with it.
class SessionCache {
 public:
  ~SessionCache() {
    for (auto& [key, entry] : entries_) SSL_SESSION_free(entry.session);
  }

  // Takes `session` (one reference).
  void Put(const std::string& key, SSL_SESSION* session) {
    std::lock_guard lock(mu_);
    if (auto it = entries_.find(key); it != entries_.end()) {
      SSL_SESSION_free(it->second.session);
      it->second.session = session;
      order_.splice(order_.begin(), order_, it->second.position);
      return;
    }
    while (entries_.size() >= kMaxTlsSessions) {
      auto oldest = entries_.find(order_.back());
      SSL_SESSION_free(oldest->second.session);
      entries_.erase(oldest);
      order_.pop_back();
    }
    order_.push_front(key);
    entries_.emplace(key, Entry{session, order_.begin()});
  }

  // A copy of the session kept under `key` (the caller owns it), or null
  // when there is none or it can no longer be resumed. Copied under the
  // lock, so that no thread reads the kept session while another frees it:
  // OpenSSL's reference counts would make a copy outside the lock safe too,
  // but ThreadSanitizer cannot see them (libssl is not instrumented) and
  // reported exactly that as a race.
  SSL_SESSION* Copy(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end() || SSL_SESSION_is_resumable(it->second.session) != 1) return nullptr;
    return SSL_SESSION_dup(it->second.session);
  }

  void Erase(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    SSL_SESSION_free(it->second.session);
    order_.erase(it->second.position);
    entries_.erase(it);
  }

  std::size_t size() {
    std::lock_guard lock(mu_);
    return entries_.size();
  }

 private:
  struct Entry {
    SSL_SESSION* session;
    std::list<std::string>::iterator position;
  };
  std::mutex mu_;
  std::list<std::string> order_;  // most recently stored first
  std::unordered_map<std::string, Entry> entries_;
};

void FreeCache(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<SessionCache*>(ptr);
}
void FreeKey(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<std::string*>(ptr);
}

int CacheIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, FreeCache);
  return index;
}
int KeyIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, FreeKey);
  return index;
}

SessionCache* CacheOf(SSL_CTX* context) {
  return static_cast<SessionCache*>(SSL_CTX_get_ex_data(context, CacheIndex()));
}

// OpenSSL calls this for each session the server issues (TLS 1.3: each
// ticket, read after the handshake). A copy is kept: the connection's own
// session is marked not resumable when it closes without close_notify.
int OnNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* key = static_cast<std::string*>(SSL_get_ex_data(ssl, KeyIndex()));
  SessionCache* cache = CacheOf(SSL_get_SSL_CTX(ssl));
  if (key == nullptr || cache == nullptr || SSL_SESSION_is_resumable(session) != 1) return 0;
  if (SSL_SESSION* copy = SSL_SESSION_dup(session)) cache->Put(*key, copy);
  return 0;  // OpenSSL keeps its own reference
}

}  // namespace

void EnableTlsSessionCache(SSL_CTX* context) {
  // Kept by us, per key; OpenSSL's internal store is keyed by session id only.
  SSL_CTX_set_session_cache_mode(context,
                                 SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(context, OnNewSession);
  SSL_CTX_set_ex_data(context, CacheIndex(), new SessionCache);
}

void OfferTlsSession(SSL* ssl, std::string key) {
  SessionCache* cache = CacheOf(SSL_get_SSL_CTX(ssl));
  if (cache == nullptr) return;
  // A copy, not the kept object: a TLS 1.2 resumption uses the offered
  // object itself as the connection's session, which closing without
  // close_notify spoils.
  if (SSL_SESSION* copy = cache->Copy(key)) {
    SSL_set_session(ssl, copy);
    SSL_SESSION_free(copy);  // SSL_set_session took its own reference
  }
  auto* owned = new std::string(std::move(key));
  if (SSL_set_ex_data(ssl, KeyIndex(), owned) != 1) delete owned;
}

void ForgetTlsSession(SSL* ssl) {
  auto* key = static_cast<std::string*>(SSL_get_ex_data(ssl, KeyIndex()));
  SessionCache* cache = CacheOf(SSL_get_SSL_CTX(ssl));
  if (key != nullptr && cache != nullptr) cache->Erase(*key);
}

std::size_t TlsSessionsKept(SSL_CTX* context) {
  SessionCache* cache = CacheOf(context);
  return cache == nullptr ? 0 : cache->size();
}

}  // namespace disco::http::detail
