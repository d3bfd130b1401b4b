#include "database.h"

#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <ctime>

namespace disco::service {
namespace {

constexpr int kBusyTimeoutMs = 5000;

ErrorCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      return ErrorCode::kAlreadyExists;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
      return ErrorCode::kUnavailable;
    default:
      return ErrorCode::kInternal;
  }
}

[[noreturn]] void Throw(sqlite3* db, int rc, std::string_view what) {
  throw StorageError{CodeFor(rc),
                     std::string(what) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc))};
}

}  // namespace

std::string DatabaseUrl::Redacted() const {
  if (kind == Kind::kSqlite) return "sqlite:" + target;
  // postgresql://user:password@host/db → postgresql://user:***@host/db (mysql:// alike)
  auto scheme_end = target.find("://");
  auto at = target.rfind('@');  // the last: a password may hold an unencoded '@'
  if (scheme_end == std::string::npos || at == std::string::npos) return target;
  auto colon = target.find(':', scheme_end + 3);
  if (colon == std::string::npos || colon > at) return target;
  return target.substr(0, colon + 1) + "***" + target.substr(at);
}

Result<DatabaseUrl> ParseDatabaseUrl(std::string_view text) {
  DatabaseUrl url;
  if (text.starts_with("postgresql://") || text.starts_with("postgres://")) {
    url.kind = DatabaseUrl::Kind::kPostgres;
    url.target = std::string(text);
    return url;
  }
  if (text.starts_with("mysql://")) {
    url.kind = DatabaseUrl::Kind::kMysql;
    url.target = std::string(text);
    return url;
  }
  if (text.starts_with("sqlite:")) text.remove_prefix(7);
  if (text.empty()) return Fail(ErrorCode::kInvalidArgument, "--db: empty database path");
  if (text.find("://") != std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                "--db: unknown database URL scheme (use a file path, postgresql:// or mysql://)");
  }
  url.kind = DatabaseUrl::Kind::kSqlite;
  url.target = std::string(text);
  return url;
}

Result<std::unique_ptr<SqliteConnection>> SqliteConnection::Open(const std::string& path,
                                                                 SqliteSync sync,
                                                                 std::string_view schema,
                                                                 Migration migration) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = "cannot open SQLite database '" + path +
                          "': " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return Fail(ErrorCode::kUnavailable, message);
  }
  std::unique_ptr<SqliteConnection> conn(new SqliteConnection(db));
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  std::string setup = "PRAGMA journal_mode=WAL; PRAGMA synchronous=";
  setup += sync == SqliteSync::kFull ? "FULL" : "NORMAL";
  setup += "; PRAGMA foreign_keys=ON; BEGIN IMMEDIATE; ";
  setup += schema;
  setup += ";";
  auto failed = [&](std::string_view why) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return Fail(ErrorCode::kUnavailable,
                "preparing SQLite database '" + path + "': " + std::string(why));
  };
  char* error = nullptr;
  rc = sqlite3_exec(db, setup.c_str(), nullptr, nullptr, &error);
  if (rc == SQLITE_OK && migration) {
    try {
      migration(*conn);
    } catch (const StorageError& e) {
      return failed(e.message);
    }
  }
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    std::string why = error ? error : sqlite3_errstr(rc);
    sqlite3_free(error);
    return failed(why);
  }
  return conn;
}

SqliteConnection::~SqliteConnection() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close(db_);
}

SqliteConnection::Statement SqliteConnection::Prepare(const char* sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) Throw(db_, rc, "prepare");
    it = statements_.emplace(sql, stmt).first;
  }
  return Statement(it->second);
}

void SqliteConnection::Exec(const char* sql) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) Throw(db_, rc, "exec");
}

std::int64_t SqliteConnection::LastInsertId() const { return sqlite3_last_insert_rowid(db_); }
int SqliteConnection::ExtendedErrorCode() const { return sqlite3_extended_errcode(db_); }

SqliteConnection::Statement::~Statement() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

SqliteConnection::Statement& SqliteConnection::Statement::Bind(int index, std::int64_t value) {
  int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) Throw(sqlite3_db_handle(stmt_), rc, "bind");
  return *this;
}

SqliteConnection::Statement& SqliteConnection::Statement::Bind(int index, std::string_view value) {
  int rc = sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                             SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) Throw(sqlite3_db_handle(stmt_), rc, "bind");
  return *this;
}

bool SqliteConnection::Statement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  Throw(sqlite3_db_handle(stmt_), rc, "step");
}

std::int64_t SqliteConnection::Statement::Int(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

std::string SqliteConnection::Statement::Text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_, column);
  int n = sqlite3_column_bytes(stmt_, column);
  return text ? std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(n))
              : std::string();
}

}  // namespace disco::service

namespace disco::service {

std::string UtcTimestamp() {
  auto now = std::chrono::system_clock::now();
  auto seconds = std::chrono::system_clock::to_time_t(now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace disco::service
