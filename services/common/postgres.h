// PostgreSQL connections for the repositories (libpqxx 6).
//
// Thread safety: a connection belongs to one thread at a time (hand them out
// through ConnectionPool).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <string_view>

#include "database.h"
#include "disco/error.h"

namespace disco::service {

// Connects and runs `schema` (idempotent DDL) in one transaction under an
// advisory lock, so instances starting together do not race on CREATE
// (an empty `schema`: just connects).
// Errors: kUnavailable (the message has no password).
Result<std::unique_ptr<pqxx::connection>> OpenPostgres(const std::string& url,
                                                       std::string_view schema);

// A repository's connections, given the repository's prepared statements by
// `prepare`; the first one (Check() at start-up) also creates `schema`. Run() lends one to `body`
// and turns libpqxx's exceptions into kUnavailable; a broken connection is
// dropped, and the next call reconnects.
class PostgresPool {
 public:
  using Prepare = void (*)(pqxx::connection&);
  PostgresPool(std::string url, std::string_view schema, Prepare prepare, std::size_t connections);

  // Opens one connection now, so that a bad URL or an unreachable server is
  // reported at start-up.
  Result<void> Check();

  template <class T, class F>
  Result<T> Run(F&& body) {
    auto lease = pool_.Acquire();
    if (!lease) return std::unexpected(lease.error());
    try {
      return body(**lease);
    } catch (const pqxx::broken_connection& e) {
      lease->Discard();
      return Fail(ErrorCode::kUnavailable, std::string("PostgreSQL connection lost: ") + e.what());
    } catch (const std::exception& e) {
      return Fail(ErrorCode::kUnavailable, std::string("PostgreSQL: ") + e.what());
    }
  }

 private:
  std::atomic<bool> schema_ready_{false};
  ConnectionPool<pqxx::connection> pool_;
};

}  // namespace disco::service
