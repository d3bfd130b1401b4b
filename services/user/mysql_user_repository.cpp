// UserRepository on MySQL/MariaDB (InnoDB): for instances on several hosts.
#include "common/database.h"
#include "common/mysql.h"
#include "user_repository.h"

namespace disco::user {
namespace {

using service::MysqlConnection;

// Binary collation without padding: names compare byte for byte, as in
// SQLite and PostgreSQL ("Alice", "alice" and "alice " are three users).
const std::vector<std::string> kSchema = {
    "CREATE TABLE IF NOT EXISTS users ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " username VARCHAR(255) NOT NULL,"
    " email TEXT NOT NULL,"
    " password_hash TEXT NOT NULL,"
    " created_at VARCHAR(32) NOT NULL,"
    " UNIQUE KEY users_by_username (username))"
    " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"};

constexpr const char* kInsert =
    "INSERT INTO users (username, email, password_hash, created_at) VALUES (?, ?, ?, ?)";
constexpr const char* kById =
    "SELECT id, username, email, password_hash, created_at FROM users WHERE id = ?";
constexpr const char* kByName =
    "SELECT id, username, email, password_hash, created_at FROM users WHERE username = ?";
constexpr const char* kUpdateHash =
    "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?";

std::optional<User> First(MysqlConnection::Statement& s) {
  if (!s.Next()) return std::nullopt;
  return User{s.Int(0), s.Text(1), s.Text(2), s.Text(3), s.Text(4)};
}

class MysqlUserRepository final : public UserRepository {
 public:
  MysqlUserRepository(service::MysqlUrl url, const service::StorageOptions& options)
      : pool_(std::move(url), kSchema, options.connections) {}

  Result<void> Check() { return pool_.Check(); }

  Result<User> Create(const NewUser& user) override {
    return pool_.Run<User>([&](MysqlConnection& conn) -> Result<User> {
      User created{0, user.username, user.email, user.password_hash, service::UtcTimestamp()};
      auto insert = conn.Prepare(kInsert);
      insert.Bind(1, user.username)
          .Bind(2, user.email)
          .Bind(3, user.password_hash)
          .Bind(4, created.created_at);
      try {
        insert.Execute();  // autocommit: durable when it returns
      } catch (const service::MysqlError& e) {
        if (e.number == service::kMysqlDuplicateEntry)
          return Fail(ErrorCode::kAlreadyExists, "username taken");
        throw;
      }
      created.id = insert.InsertId();
      return created;
    });
  }

  Result<std::optional<User>> FindById(std::int64_t id) override {
    return pool_.Read<std::optional<User>>(
        [&](MysqlConnection& conn) -> Result<std::optional<User>> {
          auto select = conn.Prepare(kById);
          select.Bind(1, id).Execute();
          return First(select);
        });
  }

  Result<std::optional<User>> FindByUsername(std::string_view username) override {
    return pool_.Read<std::optional<User>>(
        [&](MysqlConnection& conn) -> Result<std::optional<User>> {
          auto select = conn.Prepare(kByName);
          select.Bind(1, username).Execute();
          return First(select);
        });
  }

  Result<bool> UpdatePasswordHash(std::int64_t id, std::string_view old_hash,
                                  std::string_view new_hash) override {
    return pool_.Run<bool>([&](MysqlConnection& conn) -> Result<bool> {
      auto update = conn.Prepare(kUpdateHash);
      update.Bind(1, new_hash).Bind(2, id).Bind(3, old_hash).Execute();
      return update.AffectedRows() > 0;  // rows matched (CLIENT_FOUND_ROWS)
    });
  }

 private:
  service::MysqlPool pool_;
};

}  // namespace

Result<std::unique_ptr<UserRepository>> OpenMysqlUserRepository(
    const std::string& url, const service::StorageOptions& options) {
  auto parsed = service::ParseMysqlUrl(url);
  if (!parsed) return std::unexpected(parsed.error());
  auto repo = std::make_unique<MysqlUserRepository>(std::move(*parsed), options);
  if (auto ok = repo->Check(); !ok) return std::unexpected(ok.error());
  return repo;
}

}  // namespace disco::user
