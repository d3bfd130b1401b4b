// UserRepository on SQLite: one file, WAL, shared by every instance on the host.
#include "common/database.h"
#include "user_repository.h"

namespace disco::user {
namespace {

using service::ConnectionPool;
using service::Guard;
using service::SqliteConnection;

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS users ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " username TEXT NOT NULL UNIQUE,"
    " email TEXT NOT NULL,"
    " password_hash TEXT NOT NULL,"
    " created_at TEXT NOT NULL)";

constexpr const char* kInsert =
    "INSERT INTO users (username, email, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)";
constexpr const char* kById =
    "SELECT id, username, email, password_hash, created_at FROM users WHERE id = ?1";
constexpr const char* kByName =
    "SELECT id, username, email, password_hash, created_at FROM users WHERE username = ?1";
constexpr const char* kUpdateHash =
    "UPDATE users SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2 RETURNING id";

User Row(const SqliteConnection::Statement& s) {
  return User{s.Int(0), s.Text(1), s.Text(2), s.Text(3), s.Text(4)};
}

class SqliteUserRepository final : public UserRepository {
 public:
  SqliteUserRepository(std::string path, const service::StorageOptions& options)
      : pool_([path,
               sync = options.sqlite_sync] { return SqliteConnection::Open(path, sync, kSchema); },
              options.connections) {}

  Result<void> Check() {
    auto lease = pool_.Acquire();
    if (!lease) return std::unexpected(lease.error());
    return {};
  }

  Result<User> Create(const NewUser& user) override {
    auto lease = pool_.Acquire();
    if (!lease) return std::unexpected(lease.error());
    return Guard<User>([&]() -> Result<User> {
      User created{0, user.username, user.email, user.password_hash, service::UtcTimestamp()};
      auto& conn = **lease;
      try {
        auto insert = conn.Prepare(kInsert);
        insert.Bind(1, user.username)
            .Bind(2, user.email)
            .Bind(3, user.password_hash)
            .Bind(4, created.created_at);
        insert.Step();
      } catch (const service::StorageError& e) {
        if (e.code == ErrorCode::kAlreadyExists)
          return Fail(ErrorCode::kAlreadyExists, "username taken");
        throw;
      }
      created.id = conn.LastInsertId();
      return created;
    });
  }

  Result<std::optional<User>> FindById(std::int64_t id) override {
    auto lease = pool_.Acquire();
    if (!lease) return std::unexpected(lease.error());
    return Guard<std::optional<User>>([&]() -> Result<std::optional<User>> {
      auto select = (*lease)->Prepare(kById);
      select.Bind(1, id);
      if (!select.Step()) return std::nullopt;
      return Row(select);
    });
  }

  Result<std::optional<User>> FindByUsername(std::string_view username) override {
    auto lease = pool_.Acquire();
    if (!lease) return std::unexpected(lease.error());
    return Guard<std::optional<User>>([&]() -> Result<std::optional<User>> {
      auto select = (*lease)->Prepare(kByName);
      select.Bind(1, username);
      if (!select.Step()) return std::nullopt;
      return Row(select);
    });
  }

  Result<bool> UpdatePasswordHash(std::int64_t id, std::string_view old_hash,
                                  std::string_view new_hash) override {
    auto lease = pool_.Acquire();
    if (!lease) return std::unexpected(lease.error());
    return Guard<bool>([&]() -> Result<bool> {
      auto update = (*lease)->Prepare(kUpdateHash);
      update.Bind(1, id).Bind(2, old_hash).Bind(3, new_hash);
      bool updated = false;
      while (update.Step()) updated = true;  // run to the end: the change is committed
      return updated;
    });
  }

 private:
  ConnectionPool<SqliteConnection> pool_;
};

}  // namespace

Result<std::unique_ptr<UserRepository>> OpenSqliteUserRepository(
    const std::string& path, const service::StorageOptions& options) {
  auto repo = std::make_unique<SqliteUserRepository>(path, options);
  if (auto ok = repo->Check(); !ok)
    return std::unexpected(ok.error());  // opens the file, creates the schema
  return repo;
}

Result<std::unique_ptr<UserRepository>> OpenUserRepository(const service::DatabaseUrl& url,
                                                           const service::StorageOptions& options) {
  switch (url.kind) {
    case service::DatabaseUrl::Kind::kPostgres:
      return OpenPostgresUserRepository(url.target, options);
    case service::DatabaseUrl::Kind::kMysql:
      return OpenMysqlUserRepository(url.target, options);
    case service::DatabaseUrl::Kind::kSqlite:
      break;
  }
  return OpenSqliteUserRepository(url.target, options);
}

}  // namespace disco::user
