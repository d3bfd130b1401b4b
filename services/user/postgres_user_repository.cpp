// UserRepository on PostgreSQL (libpqxx): for instances on several hosts.
#include "common/database.h"
#include "common/postgres.h"
#include "user_repository.h"

namespace disco::user {
namespace {

using service::Guard;

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS users ("
    " id BIGSERIAL PRIMARY KEY,"
    " username TEXT NOT NULL UNIQUE,"
    " email TEXT NOT NULL,"
    " password_hash TEXT NOT NULL,"
    " created_at TEXT NOT NULL)";

void PrepareStatements(pqxx::connection& conn) {
  conn.prepare("user_insert",
               "INSERT INTO users (username, email, password_hash, created_at) VALUES ($1, $2, $3, "
               "$4) RETURNING id");
  conn.prepare("user_by_id",
               "SELECT id, username, email, password_hash, created_at FROM users WHERE id = $1");
  conn.prepare(
      "user_by_name",
      "SELECT id, username, email, password_hash, created_at FROM users WHERE username = $1");
  conn.prepare("user_update_hash",
               "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2");
}

std::optional<User> First(const pqxx::result& rows) {
  if (rows.empty()) return std::nullopt;
  const auto& r = rows[0];
  return User{r[0].as<std::int64_t>(), r[1].as<std::string>(), r[2].as<std::string>(),
              r[3].as<std::string>(), r[4].as<std::string>()};
}

class PostgresUserRepository final : public UserRepository {
 public:
  PostgresUserRepository(std::string url, const service::StorageOptions& options)
      : pool_(std::move(url), kSchema, PrepareStatements, options.connections) {}

  Result<void> Check() { return pool_.Check(); }

  Result<User> Create(const NewUser& user) override {
    return pool_.Run<User>([&](pqxx::connection& conn) -> Result<User> {
      User created{0, user.username, user.email, user.password_hash, service::UtcTimestamp()};
      try {
        pqxx::nontransaction txn(conn);
        auto rows = txn.exec_prepared("user_insert", user.username, user.email, user.password_hash,
                                      created.created_at);
        created.id = rows[0][0].as<std::int64_t>();
      } catch (const pqxx::unique_violation&) {
        return Fail(ErrorCode::kAlreadyExists, "username taken");
      }
      return created;
    });
  }

  Result<std::optional<User>> FindById(std::int64_t id) override {
    return pool_.Run<std::optional<User>>(
        [&](pqxx::connection& conn) -> Result<std::optional<User>> {
          pqxx::nontransaction txn(conn);
          return First(txn.exec_prepared("user_by_id", id));
        });
  }

  Result<std::optional<User>> FindByUsername(std::string_view username) override {
    return pool_.Run<std::optional<User>>(
        [&](pqxx::connection& conn) -> Result<std::optional<User>> {
          pqxx::nontransaction txn(conn);
          return First(txn.exec_prepared("user_by_name", std::string(username)));
        });
  }

  Result<bool> UpdatePasswordHash(std::int64_t id, std::string_view old_hash,
                                  std::string_view new_hash) override {
    return pool_.Run<bool>([&](pqxx::connection& conn) -> Result<bool> {
      pqxx::nontransaction txn(conn);
      auto rows =
          txn.exec_prepared("user_update_hash", id, std::string(old_hash), std::string(new_hash));
      return rows.affected_rows() > 0;
    });
  }

 private:
  service::PostgresPool pool_;
};

}  // namespace

Result<std::unique_ptr<UserRepository>> OpenPostgresUserRepository(
    const std::string& url, const service::StorageOptions& options) {
  auto repo = std::make_unique<PostgresUserRepository>(url, options);
  if (auto ok = repo->Check(); !ok) return std::unexpected(ok.error());
  return repo;
}

}  // namespace disco::user
