#include "mysql.h"

#include <errmsg.h>
#include <mysql.h>

#include <atomic>
#include <charconv>
#include <fstream>
#include <mutex>

namespace disco::service {
namespace {

constexpr unsigned kServerShutdown = 1053;    // ER_SERVER_SHUTDOWN
constexpr unsigned kConnectionKilled = 1927;  // ER_CONNECTION_KILLED
// A string column's first buffer; longer values are fetched again whole.
constexpr unsigned long kTextBuffer = 256;
// Held while a service creates its tables: instances starting together
// create them one after the other (server-wide, like PostgreSQL's advisory lock).
constexpr const char* kSchemaLock = "SELECT GET_LOCK('disco_schema', 30)";
constexpr const char* kSchemaUnlock = "DO RELEASE_LOCK('disco_schema')";

// Errors after which the connection cannot be used again: the client's own
// (lost, gone, cannot connect, timed out) and the server going down.
bool Breaks(unsigned number) {
  return (number >= CR_MIN_ERROR && number <= CR_MAX_ERROR) || number == kServerShutdown ||
         number == kConnectionKilled;
}

void InitLibrary() {
  // mysql_init() would do it too, but not safely from several threads at once.
  static std::once_flag once;
  std::call_once(once, [] { mysql_library_init(0, nullptr, nullptr); });
}

Result<std::string> Decode(std::string_view text, std::string_view what) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    unsigned value = 0;
    if (i + 2 >= text.size() ||
        std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16).ptr !=
            text.data() + i + 3) {
      return Fail(ErrorCode::kInvalidArgument,
                  "--db: bad percent-encoding in the " + std::string(what) + " of the mysql:// URL");
    }
    if (value == 0) {  // the C API would cut the string there
      return Fail(ErrorCode::kInvalidArgument,
                  "--db: %00 in the " + std::string(what) + " of the mysql:// URL");
    }
    out += static_cast<char>(value);
    i += 2;
  }
  return out;
}

Result<unsigned> Number(std::string_view text, std::string_view what, unsigned max) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value == 0 || value > max) {
    return Fail(ErrorCode::kInvalidArgument, "--db: mysql:// " + std::string(what) +
                                                 " must be a number from 1 to " +
                                                 std::to_string(max));
  }
  return value;
}

}  // namespace

Result<MysqlUrl> ParseMysqlUrl(std::string_view text) {
  constexpr std::string_view kScheme = "mysql://";
  if (!text.starts_with(kScheme)) return Fail(ErrorCode::kInvalidArgument, "--db: not mysql://");
  text.remove_prefix(kScheme.size());
  MysqlUrl url;
  std::string_view query;
  if (auto q = text.find('?'); q != std::string_view::npos) {
    query = text.substr(q + 1);
    text = text.substr(0, q);
  }
  // The last '@': a password may hold an unencoded one.
  if (auto at = text.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = text.substr(0, at);
    text.remove_prefix(at + 1);
    auto colon = userinfo.find(':');
    auto user = Decode(userinfo.substr(0, colon), "user");
    if (!user) return std::unexpected(user.error());
    url.user = std::move(*user);
    if (colon != std::string_view::npos) {
      auto password = Decode(userinfo.substr(colon + 1), "password");
      if (!password) return std::unexpected(password.error());
      url.password = std::move(*password);
    }
  }
  if (url.user.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "--db: mysql:// needs a user: mysql://user:password@host:port/database");
  }
  auto slash = text.find('/');
  std::string_view hostport = text.substr(0, slash);
  if (slash != std::string_view::npos) url.database = std::string(text.substr(slash + 1));
  if (url.database.empty() || url.database.find('/') != std::string::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                "--db: mysql:// needs a database name: mysql://user:password@host:port/database");
  }
  auto colon = hostport.rfind(':');
  auto bracket = hostport.find(']');  // [::1]:3306
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    auto port = Number(hostport.substr(colon + 1), "port", 65535);
    if (!port) return std::unexpected(port.error());
    url.port = *port;
    hostport = hostport.substr(0, colon);
  }
  if (hostport.starts_with('[') && hostport.ends_with(']'))
    hostport = hostport.substr(1, hostport.size() - 2);
  if (!hostport.empty()) url.host = std::string(hostport);

  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    auto eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    auto value = Decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), key);
    if (!value) return std::unexpected(value.error());
    if (key == "connect_timeout" || key == "read_timeout" || key == "write_timeout") {
      auto seconds = Number(*value, key, 3600);
      if (!seconds) return std::unexpected(seconds.error());
      (key == "connect_timeout" ? url.connect_timeout_s
       : key == "read_timeout"  ? url.read_timeout_s
                                : url.write_timeout_s) = *seconds;
    } else if (key == "socket") {
      url.socket = std::move(*value);
    } else if (key == "password_file") {
      std::ifstream in(*value);
      if (!in) {
        return Fail(ErrorCode::kInvalidArgument,
                    "--db: cannot read the mysql:// password_file " + *value);
      }
      constexpr std::size_t kMaxPassword = 4096;
      url.password.assign(kMaxPassword + 1, '\0');
      in.read(url.password.data(), static_cast<std::streamsize>(url.password.size()));
      url.password.resize(static_cast<std::size_t>(in.gcount()));
      if (url.password.size() > kMaxPassword) {
        return Fail(ErrorCode::kInvalidArgument,
                    "--db: the mysql:// password_file " + *value + " is over 4 KiB");
      }
      while (!url.password.empty() &&
             (url.password.back() == '\n' || url.password.back() == '\r'))
        url.password.pop_back();
    } else {
      return Fail(ErrorCode::kInvalidArgument,
                  "--db: unknown mysql:// option '" + std::string(key) +
                      "' (connect_timeout, read_timeout, write_timeout, socket, password_file)");
    }
  }
  return url;
}

// A prepared statement and the buffers its parameters and columns are bound to.
struct MysqlConnection::Prepared {
  MYSQL_STMT* stmt = nullptr;
  std::vector<std::variant<std::int64_t, std::string>> params;
  std::vector<MYSQL_BIND> param_binds;
  std::vector<unsigned long> param_lengths;
  // Columns: integers into ints, anything else into texts (kTextBuffer
  // bytes; a longer value is fetched again into long_texts).
  std::vector<bool> is_int;
  std::vector<MYSQL_BIND> column_binds;
  std::vector<std::int64_t> ints;
  std::vector<std::string> texts;
  std::vector<std::string> long_texts;
  std::vector<unsigned long> lengths;
  std::vector<my_bool> nulls;

  ~Prepared() {
    if (stmt) mysql_stmt_close(stmt);
  }
};

Result<std::unique_ptr<MysqlConnection>> MysqlConnection::Open(
    const MysqlUrl& url, const std::vector<std::string>& schema) {
  InitLibrary();
  MYSQL* db = mysql_init(nullptr);
  if (db == nullptr) return Fail(ErrorCode::kUnavailable, "MySQL: out of memory");
  std::unique_ptr<MysqlConnection> conn(new MysqlConnection(db));
  my_bool no = 0;
  mysql_options(db, MYSQL_OPT_RECONNECT, &no);  // a silent reconnect would lose prepared statements
  mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &url.connect_timeout_s);
  mysql_options(db, MYSQL_OPT_READ_TIMEOUT, &url.read_timeout_s);
  mysql_options(db, MYSQL_OPT_WRITE_TIMEOUT, &url.write_timeout_s);
  mysql_options(db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  // Whatever the server's defaults: a value that does not fit is an error,
  // never silently cut, and ENGINE=InnoDB is never replaced by another engine.
  mysql_options(db, MYSQL_INIT_COMMAND,
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'");
  const std::string where = url.socket.empty()
                                ? url.host + ":" + std::to_string(url.port)
                                : url.socket;
  // CLIENT_FOUND_ROWS: an UPDATE reports the rows it matched, as SQLite and
  // PostgreSQL do, not only those whose value changed.
  if (mysql_real_connect(db, url.host.c_str(), url.user.c_str(), url.password.c_str(),
                         url.database.c_str(), url.socket.empty() ? url.port : 0,
                         url.socket.empty() ? nullptr : url.socket.c_str(),
                         CLIENT_FOUND_ROWS) == nullptr) {
    // The server's and the client's messages name user and host, never the password.
    return Fail(ErrorCode::kUnavailable, "cannot connect to MySQL at " + where + " (database '" +
                                             url.database + "', user '" + url.user +
                                             "'): " + mysql_error(db));
  }
  if (schema.empty()) return conn;
  try {
    if (mysql_real_query(db, kSchemaLock, std::char_traits<char>::length(kSchemaLock)) != 0)
      conn->Throw(mysql_errno(db), mysql_error(db), "schema lock");
    MYSQL_RES* res = mysql_store_result(db);
    MYSQL_ROW row = res ? mysql_fetch_row(res) : nullptr;
    bool locked = row && row[0] && std::string_view(row[0]) == "1";
    if (res) mysql_free_result(res);
    if (!locked) throw MysqlError{{ErrorCode::kUnavailable, "MySQL: schema lock not granted"}, 0};
    for (const auto& ddl : schema) {
      if (mysql_real_query(db, ddl.data(), ddl.size()) != 0)
        conn->Throw(mysql_errno(db), mysql_error(db), "creating the schema");
    }
    conn->Exec(kSchemaUnlock);
  } catch (const MysqlError& e) {
    return Fail(ErrorCode::kUnavailable,
                "preparing MySQL database '" + url.database + "' at " + where + ": " + e.message);
  }
  return conn;
}

MysqlConnection::MysqlConnection(MYSQL* db) : db_(db) {}

MysqlConnection::~MysqlConnection() {
  statements_.clear();  // closes them before the connection
  mysql_close(db_);
}

void MysqlConnection::Throw(unsigned number, const char* message, std::string_view what) {
  if (Breaks(number)) broken_ = true;
  throw MysqlError{{number == kMysqlDuplicateEntry ? ErrorCode::kAlreadyExists
                                                   : ErrorCode::kUnavailable,
                    "MySQL " + std::string(what) + ": " + message + " (" +
                        std::to_string(number) + ")"},
                   number};
}

MysqlConnection::Statement MysqlConnection::Prepare(const char* sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    auto p = std::make_unique<Prepared>();
    p->stmt = mysql_stmt_init(db_);
    if (p->stmt == nullptr) Throw(mysql_errno(db_), mysql_error(db_), "prepare");
    if (mysql_stmt_prepare(p->stmt, sql, std::char_traits<char>::length(sql)) != 0)
      Throw(mysql_stmt_errno(p->stmt), mysql_stmt_error(p->stmt), "prepare");
    p->params.resize(mysql_stmt_param_count(p->stmt));
    p->param_binds.resize(p->params.size());
    p->param_lengths.resize(p->params.size());
    if (MYSQL_RES* meta = mysql_stmt_result_metadata(p->stmt)) {
      unsigned n = mysql_num_fields(meta);
      MYSQL_FIELD* fields = mysql_fetch_fields(meta);
      for (unsigned i = 0; i < n; ++i) {
        auto type = fields[i].type;
        p->is_int.push_back(type == MYSQL_TYPE_LONGLONG || type == MYSQL_TYPE_LONG ||
                            type == MYSQL_TYPE_INT24 || type == MYSQL_TYPE_SHORT ||
                            type == MYSQL_TYPE_TINY);
      }
      mysql_free_result(meta);
      p->column_binds.resize(n);
      p->ints.resize(n);
      p->texts.assign(n, std::string(kTextBuffer, '\0'));
      p->long_texts.resize(n);
      p->lengths.resize(n);
      p->nulls.resize(n);
    }
    it = statements_.emplace(sql, std::move(p)).first;
  }
  return Statement(this, it->second.get());
}

void MysqlConnection::Exec(const char* sql) {
  if (mysql_real_query(db_, sql, std::char_traits<char>::length(sql)) != 0)
    Throw(mysql_errno(db_), mysql_error(db_), "exec");
  if (MYSQL_RES* res = mysql_store_result(db_)) mysql_free_result(res);
}

bool MysqlConnection::Ping() {
  if (mysql_ping(db_) == 0) return true;
  broken_ = true;
  return false;
}

std::chrono::steady_clock::duration MysqlConnection::Idle() const {
  return std::chrono::steady_clock::now() - last_used_;
}

void MysqlConnection::Touch() { last_used_ = std::chrono::steady_clock::now(); }

MysqlConnection::Statement::~Statement() {
  mysql_stmt_free_result(p_->stmt);  // the buffered rows; no round trip
  for (auto& param : p_->params) param = std::int64_t{0};
}

MysqlConnection::Statement& MysqlConnection::Statement::Bind(int index, std::int64_t value) {
  p_->params.at(static_cast<std::size_t>(index - 1)) = value;
  return *this;
}

MysqlConnection::Statement& MysqlConnection::Statement::Bind(int index, std::string_view value) {
  p_->params.at(static_cast<std::size_t>(index - 1)) = std::string(value);
  return *this;
}

void MysqlConnection::Statement::Execute() {
  MYSQL_STMT* stmt = p_->stmt;
  for (std::size_t i = 0; i < p_->params.size(); ++i) {
    MYSQL_BIND& b = p_->param_binds[i];
    b = MYSQL_BIND{};
    if (auto* number = std::get_if<std::int64_t>(&p_->params[i])) {
      b.buffer_type = MYSQL_TYPE_LONGLONG;
      b.buffer = number;
    } else {
      auto& text = std::get<std::string>(p_->params[i]);
      p_->param_lengths[i] = text.size();
      b.buffer_type = MYSQL_TYPE_STRING;
      b.buffer = text.data();
      b.buffer_length = text.size();
      b.length = &p_->param_lengths[i];
    }
  }
  if (!p_->param_binds.empty() && mysql_stmt_bind_param(stmt, p_->param_binds.data()))
    conn_->Throw(mysql_stmt_errno(stmt), mysql_stmt_error(stmt), "bind");
  if (mysql_stmt_execute(stmt) != 0)
    conn_->Throw(mysql_stmt_errno(stmt), mysql_stmt_error(stmt), "execute");
  if (p_->column_binds.empty()) return;
  // Buffered: the connection is free for the next statement at once.
  if (mysql_stmt_store_result(stmt) != 0)
    conn_->Throw(mysql_stmt_errno(stmt), mysql_stmt_error(stmt), "fetch");
  for (std::size_t i = 0; i < p_->column_binds.size(); ++i) {
    MYSQL_BIND& b = p_->column_binds[i];
    b = MYSQL_BIND{};
    b.is_null = &p_->nulls[i];
    b.length = &p_->lengths[i];
    if (p_->is_int[i]) {
      b.buffer_type = MYSQL_TYPE_LONGLONG;
      b.buffer = &p_->ints[i];
    } else {
      b.buffer_type = MYSQL_TYPE_STRING;
      b.buffer = p_->texts[i].data();
      b.buffer_length = kTextBuffer;
    }
  }
  if (mysql_stmt_bind_result(stmt, p_->column_binds.data()))
    conn_->Throw(mysql_stmt_errno(stmt), mysql_stmt_error(stmt), "bind result");
}

bool MysqlConnection::Statement::Next() {
  MYSQL_STMT* stmt = p_->stmt;
  int rc = mysql_stmt_fetch(stmt);
  if (rc == MYSQL_NO_DATA) return false;
  if (rc == 1) conn_->Throw(mysql_stmt_errno(stmt), mysql_stmt_error(stmt), "fetch");
  // MYSQL_DATA_TRUNCATED or not: any text longer than its buffer is fetched again whole.
  for (std::size_t i = 0; i < p_->column_binds.size(); ++i) {
    p_->long_texts[i].clear();
    if (p_->is_int[i] || p_->nulls[i] || p_->lengths[i] <= kTextBuffer) continue;
    std::string& whole = p_->long_texts[i];
    whole.resize(p_->lengths[i]);
    MYSQL_BIND b{};
    b.buffer_type = MYSQL_TYPE_STRING;
    b.buffer = whole.data();
    b.buffer_length = whole.size();
    unsigned long length = 0;
    b.length = &length;
    if (mysql_stmt_fetch_column(stmt, &b, static_cast<unsigned>(i), 0) != 0)
      conn_->Throw(mysql_stmt_errno(stmt), mysql_stmt_error(stmt), "fetch column");
  }
  return true;
}

std::int64_t MysqlConnection::Statement::Int(int column) const {
  auto i = static_cast<std::size_t>(column);
  if (p_->nulls.at(i)) return 0;
  if (p_->is_int[i]) return p_->ints[i];
  std::int64_t value = 0;
  std::string text = Text(column);
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

std::string MysqlConnection::Statement::Text(int column) const {
  auto i = static_cast<std::size_t>(column);
  if (p_->nulls.at(i)) return {};
  if (p_->is_int[i]) return std::to_string(p_->ints[i]);
  if (p_->lengths[i] > kTextBuffer) return p_->long_texts[i];
  return p_->texts[i].substr(0, p_->lengths[i]);
}

std::uint64_t MysqlConnection::Statement::AffectedRows() const {
  return mysql_stmt_affected_rows(p_->stmt);
}

std::int64_t MysqlConnection::Statement::InsertId() const {
  return static_cast<std::int64_t>(mysql_stmt_insert_id(p_->stmt));
}

MysqlPool::MysqlPool(MysqlUrl url, std::vector<std::string> schema, std::size_t connections)
    : pool_(
          [url = std::move(url), schema = std::move(schema),
           ready = std::make_shared<std::atomic<bool>>(false)]()
              -> Result<std::unique_ptr<MysqlConnection>> {
            // The DDL runs on the first connection only, not on every
            // reconnect under load.
            auto conn = MysqlConnection::Open(url, *ready ? std::vector<std::string>() : schema);
            if (conn) *ready = true;
            return conn;
          },
          connections) {}

Result<void> MysqlPool::Check() {
  auto lease = pool_.Acquire();
  if (!lease) return std::unexpected(lease.error());
  return {};
}

Result<ConnectionPool<MysqlConnection>::Lease> MysqlPool::Acquire() {
  // A connection left idle may lead to a server that has restarted since;
  // one ping tells (under load connections are never idle that long).
  for (;;) {
    auto lease = pool_.Acquire();
    if (!lease) return lease;
    if ((*lease)->Idle() >= std::chrono::seconds(1) && !(*lease)->Ping()) {
      lease->Discard();
      pool_.DiscardIdle();
      continue;  // at most once per idle connection; the next ones are new
    }
    (*lease)->Touch();
    return lease;
  }
}

}  // namespace disco::service
