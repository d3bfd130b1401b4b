// MariaDB/MySQL connections for the repositories (MariaDB Connector/C, the
// client library Debian ships as libmariadb). Every statement that carries a
// value is a server-side prepared statement with bound parameters; only
// constant DDL and transaction control go through the text protocol.
//
// URL: mysql://user:password@host:port/database[?option=value&...], user and
// password percent-decoded. Options:
//   connect_timeout=SECONDS  connecting (default 5)
//   read_timeout=SECONDS     waiting for one answer (default 30)
//   write_timeout=SECONDS    sending one statement (default 30)
//   socket=PATH              a Unix socket instead of host:port
//   password_file=PATH       the password from a file (trailing newline
//                            dropped), so that it is not on a command line
//
// Durability: commits are InnoDB commits; with the server's default
// innodb_flush_log_at_trx_commit=1 each is fsync'd before it returns, so an
// acknowledged write survives kill -9 of the service and of the server.
//
// Thread safety: a MysqlConnection belongs to one thread at a time (hand
// them out through MysqlPool). Calls block (meant for a BlockingPool thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "database.h"
#include "disco/error.h"

struct st_mysql;
struct st_mysql_stmt;

namespace disco::service {

struct MysqlUrl {
  std::string user;
  std::string password;  // never logged
  std::string host = "127.0.0.1";
  unsigned port = 3306;
  std::string database;
  std::string socket;
  unsigned connect_timeout_s = 5;
  unsigned read_timeout_s = 30;
  unsigned write_timeout_s = 30;
};

// Errors: kInvalidArgument (the message never holds the password).
Result<MysqlUrl> ParseMysqlUrl(std::string_view url);

// Server error numbers the repositories act on.
inline constexpr unsigned kMysqlDuplicateEntry = 1062;  // ER_DUP_ENTRY
inline constexpr unsigned kMysqlDeadlock = 1213;        // ER_LOCK_DEADLOCK

// What a failed call throws (a StorageError, so Guard() converts it).
struct MysqlError : StorageError {
  unsigned number = 0;  // mysql_errno / mysql_stmt_errno
};

class MysqlConnection {
 public:
  // Connects (utf8mb4, found rows counted by UPDATE as matched, like
  // SQLite's and PostgreSQL's), then runs each of `schema` (constant,
  // idempotent DDL) under a named server lock, so that instances starting
  // together do not race. Errors: kUnavailable.
  static Result<std::unique_ptr<MysqlConnection>> Open(const MysqlUrl& url,
                                                       const std::vector<std::string>& schema);
  ~MysqlConnection();
  MysqlConnection(const MysqlConnection&) = delete;
  MysqlConnection& operator=(const MysqlConnection&) = delete;

  class Statement;

  // The cached prepared statement for `sql` (a string literal: cached by
  // address); ready for Bind() and Execute(). Throws MysqlError.
  Statement Prepare(const char* sql);
  // Statements without parameters or rows (transaction control). Throws MysqlError.
  void Exec(const char* sql);

  // True once an error said the connection itself is gone: the pool drops it.
  bool broken() const { return broken_; }
  // Asks the server whether the connection still works (one round trip).
  bool Ping();
  // How long since the connection was last handed out.
  std::chrono::steady_clock::duration Idle() const;
  void Touch();

 private:
  struct Prepared;
  explicit MysqlConnection(st_mysql* db);  // out of line: Prepared is incomplete here
  [[noreturn]] void Throw(unsigned number, const char* message, std::string_view what);

  st_mysql* db_;
  bool broken_ = false;
  std::chrono::steady_clock::time_point last_used_ = std::chrono::steady_clock::now();
  std::map<const char*, std::unique_ptr<Prepared>> statements_;
};

// One use of a prepared statement: bind the parameters (1-based, like
// SQLite's), Execute(), then Next() through the rows. The destructor frees
// the rows, ready for the next use.
class MysqlConnection::Statement {
 public:
  Statement(MysqlConnection* conn, Prepared* prepared) : conn_(conn), p_(prepared) {}
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& Bind(int index, std::int64_t value);
  Statement& Bind(int index, std::string_view value);
  // Runs the statement and fetches its whole result. Throws MysqlError.
  void Execute();
  bool Next();  // true: a row is available. Throws MysqlError.
  std::int64_t Int(int column) const;
  std::string Text(int column) const;  // NULL reads as ""
  std::uint64_t AffectedRows() const;
  std::int64_t InsertId() const;

 private:
  MysqlConnection* conn_;
  Prepared* p_;
};

// A repository's connections: at most `connections`, made on demand; the
// first (Check() at start-up) also creates the schema. Run() and Read() lend
// one to `body` and turn a MysqlError into a Result error (kAlreadyExists for a
// duplicate key the body did not handle, else kUnavailable). A connection
// found broken is dropped together with every idle one (they lead to the same
// server, which has likely gone away), and one idle for a second or more is
// pinged before use, so that the first request after the server comes back
// does not fail on a stale connection.
class MysqlPool {
 public:
  MysqlPool(MysqlUrl url, std::vector<std::string> schema, std::size_t connections);

  // Opens one connection now, so that a bad URL, bad credentials or an
  // unreachable server are reported at start-up.
  Result<void> Check();

  // For statements that write: never run twice (a lost connection leaves
  // the outcome in doubt).
  template <class T, class F>
  Result<T> Run(F&& body) {
    bool broken = false;
    return Attempt<T>(body, broken);
  }

  // For reads: if the connection turns out broken (the server restarted
  // since it was last used), the read runs once more on a new connection.
  template <class T, class F>
  Result<T> Read(F&& body) {
    bool broken = false;
    auto result = Attempt<T>(body, broken);
    if (!result && broken) return Attempt<T>(body, broken);
    return result;
  }

 private:
  Result<ConnectionPool<MysqlConnection>::Lease> Acquire();

  template <class T, class F>
  Result<T> Attempt(F& body, bool& broken) {
    auto lease = Acquire();
    if (!lease) return std::unexpected(lease.error());
    try {
      return body(**lease);
    } catch (const MysqlError& e) {
      if ((*lease)->broken()) {
        broken = true;
        lease->Discard();
        pool_.DiscardIdle();
        return Fail(ErrorCode::kUnavailable, "MySQL connection lost: " + e.message);
      }
      return Fail(e.code, e.message);
    } catch (const std::exception& e) {
      return Fail(ErrorCode::kUnavailable, std::string("MySQL: ") + e.what());
    }
  }

  ConnectionPool<MysqlConnection> pool_;
};

}  // namespace disco::service
