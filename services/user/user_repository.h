// UserRepository: where user-service keeps accounts. Three implementations
// behind one interface, run through the same tests: SQLite (default; a file
// several instances on one host share), PostgreSQL and MySQL/MariaDB
// (several hosts).
//
// Thread safety: every method may be called from any thread at once; calls
// block on the database (run them on a BlockingPool).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/database.h"
#include "disco/error.h"

namespace disco::user {

struct User {
  std::int64_t id = 0;
  std::string username;
  std::string email;
  std::string password_hash;  // common/password.h; never leaves the service
  std::string created_at;     // UtcTimestamp()
};

struct NewUser {
  std::string username;
  std::string email;
  std::string password_hash;
};

class UserRepository {
 public:
  virtual ~UserRepository() = default;

  // Errors: kAlreadyExists (username taken), kUnavailable (database down or busy).
  virtual Result<User> Create(const NewUser& user) = 0;
  // Not found is an empty optional, not an error.
  virtual Result<std::optional<User>> FindById(std::int64_t id) = 0;
  virtual Result<std::optional<User>> FindByUsername(std::string_view username) = 0;
  // Replaces the user's password hash if it is still `old_hash` (a login that
  // upgrades an outdated hash must not overwrite one changed meanwhile).
  // False: no such user, or the hash was no longer `old_hash`.
  virtual Result<bool> UpdatePasswordHash(std::int64_t id, std::string_view old_hash,
                                          std::string_view new_hash) = 0;
};

// Opens (and creates the schema of) the database `url` names.
Result<std::unique_ptr<UserRepository>> OpenUserRepository(const service::DatabaseUrl& url,
                                                           const service::StorageOptions& options);

Result<std::unique_ptr<UserRepository>> OpenSqliteUserRepository(
    const std::string& path, const service::StorageOptions& options);
Result<std::unique_ptr<UserRepository>> OpenPostgresUserRepository(
    const std::string& url, const service::StorageOptions& options);
Result<std::unique_ptr<UserRepository>> OpenMysqlUserRepository(
    const std::string& url, const service::StorageOptions& options);

}  // namespace disco::user
