// Storage plumbing shared by the services' repositories: choosing the
// backend from --db, SQLite connections (WAL, durable commits, busy timeout),
// PostgreSQL connections (libpqxx, postgres.h) and MySQL/MariaDB connections
// (mysql.h), each handed out by a small blocking pool. Repositories are the only users; SQL always goes through bound
// parameters.
//
// Durability (SQLite): journal_mode=WAL with synchronous=NORMAL by default.
// The requirement is that a write acknowledged to the client survives the
// process being killed (kill -9). In WAL mode a commit has appended its
// frames to the WAL file with write() before sqlite3_step returns, under
// NORMAL as under FULL; after that the bytes are in the kernel's page cache,
// which outlives the process, and the next connection recovers them from the
// WAL. So NORMAL meets the requirement (the API tests kill -9 right after a
// 201 and find the order). What NORMAL gives up is the fsync per commit: after
// a kernel crash or power loss the last commits may be lost (the database is
// never corrupted). FULL (--sqlite-sync full) adds that fsync and so also
// survives power loss, at about a seventh of the write throughput here
// (docs/benchmarks.md). PostgreSQL keeps its own defaults (fsync'd commits).
//
// Thread safety: a ConnectionPool may be used from any thread; a connection
// lease belongs to one thread at a time. Calls block (they are meant for a
// BlockingPool thread).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "disco/error.h"

struct sqlite3;
struct sqlite3_stmt;

namespace disco::service {

struct DatabaseUrl {
  enum class Kind { kSqlite, kPostgres, kMysql };
  Kind kind = Kind::kSqlite;
  std::string target;  // file path, or the postgresql:// or mysql:// URL as given

  // Without the password, for logs.
  std::string Redacted() const;
};

// "postgresql://..." or "postgres://..." → PostgreSQL; "mysql://..." → MySQL/MariaDB
// (common/mysql.h); "sqlite:PATH" or a path → SQLite.
Result<DatabaseUrl> ParseDatabaseUrl(std::string_view text);

// Storage errors inside a repository; converted to Result at its boundary.
struct StorageError {
  ErrorCode code;
  std::string message;
};

// A pool of at most `max` connections made by `factory` on demand. A broken
// connection is discarded (Lease::Discard) and replaced by the next Acquire.
template <class T>
class ConnectionPool {
 public:
  using Factory = std::function<Result<std::unique_ptr<T>>()>;

  ConnectionPool(Factory factory, std::size_t max)
      : factory_(std::move(factory)), max_(max ? max : 1) {}

  class Lease {
   public:
    Lease(ConnectionPool* pool, std::unique_ptr<T> conn) : pool_(pool), conn_(std::move(conn)) {}
    Lease(Lease&& other) noexcept : pool_(other.pool_), conn_(std::move(other.conn_)) {
      other.pool_ = nullptr;
    }
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pool_) pool_->Return(std::move(conn_));
    }
    T& operator*() const { return *conn_; }
    T* operator->() const { return conn_.get(); }
    void Discard() { conn_.reset(); }

   private:
    ConnectionPool* pool_;
    std::unique_ptr<T> conn_;
  };

  Result<Lease> Acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !idle_.empty() || open_ < max_; });
    if (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(conn));
    }
    ++open_;
    lock.unlock();
    auto made = factory_();
    if (!made) {
      lock.lock();
      --open_;
      cv_.notify_one();
      return std::unexpected(made.error());
    }
    return Lease(this, std::move(*made));
  }

  // Closes every idle connection (leased ones are unaffected): after one
  // connection was found broken, the others to the same server likely are too.
  void DiscardIdle() {
    std::vector<std::unique_ptr<T>> dropped;
    {
      std::lock_guard lock(mu_);
      dropped.swap(idle_);
      open_ -= dropped.size();
      cv_.notify_all();
    }
  }

 private:
  void Return(std::unique_ptr<T> conn) {
    std::lock_guard lock(mu_);
    if (conn)
      idle_.push_back(std::move(conn));
    else
      --open_;
    cv_.notify_one();
  }

  Factory factory_;
  const std::size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<T>> idle_;
  std::size_t open_ = 0;
};

enum class SqliteSync { kFull, kNormal };

// One SQLite connection with a cache of prepared statements.
class SqliteConnection {
 public:
  // Changes to a database made by an older release (a column added later),
  // run right after `schema` in the same transaction. Throws StorageError.
  using Migration = void (*)(SqliteConnection& connection);

  // Opens (creating) the file, sets WAL, `sync`, busy_timeout and foreign
  // keys, and runs `schema` (idempotent DDL) and then `migration`, if any, in
  // one IMMEDIATE transaction, so that instances starting together never
  // migrate twice.
  static Result<std::unique_ptr<SqliteConnection>> Open(const std::string& path, SqliteSync sync,
                                                        std::string_view schema,
                                                        Migration migration = nullptr);
  ~SqliteConnection();

  class Statement {
   public:
    explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
    ~Statement();  // resets and clears bindings, for the next use
    Statement& Bind(int index, std::int64_t value);
    Statement& Bind(int index, std::string_view value);
    bool Step();  // true: a row is available; false: done. Throws StorageError.
    std::int64_t Int(int column) const;
    std::string Text(int column) const;

   private:
    sqlite3_stmt* stmt_;
  };

  // The cached statement for `sql` (a string literal: cached by address).
  // Throws StorageError.
  Statement Prepare(const char* sql);
  // Runs statements that return no rows (DDL), uncached. Throws StorageError.
  void Exec(const char* sql);
  std::int64_t LastInsertId() const;
  int ExtendedErrorCode() const;

 private:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::map<const char*, sqlite3_stmt*> statements_;
};

}  // namespace disco::service

namespace disco::service {

struct StorageOptions {
  SqliteSync sqlite_sync = SqliteSync::kNormal;
  std::size_t connections = 4;
};

// "2026-11-25T13:18:25.123Z": the one timestamp format stored and returned.
std::string UtcTimestamp();

// Runs `body` and turns a StorageError or a libpqxx/std exception into a
// Result error, so repository methods can be written straight.
template <class T, class F>
Result<T> Guard(F&& body) {
  try {
    return body();
  } catch (const StorageError& e) {
    return Fail(e.code, e.message);
  } catch (const std::exception& e) {
    return Fail(ErrorCode::kUnavailable, std::string("database error: ") + e.what());
  }
}

}  // namespace disco::service
