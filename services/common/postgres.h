// PostgreSQL connections for the repositories (libpqxx 6).
//
// Thread safety: a connection belongs to one thread at a time (hand them out
// through ConnectionPool).
#pragma once

#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <string_view>

#include "disco/error.h"

namespace disco::service {

// Connects and runs `schema` (idempotent DDL) in one transaction under an
// advisory lock, so instances starting together do not race on CREATE.
// Errors: kUnavailable (the message has no password).
Result<std::unique_ptr<pqxx::connection>> OpenPostgres(const std::string& url,
                                                       std::string_view schema);

}  // namespace disco::service
