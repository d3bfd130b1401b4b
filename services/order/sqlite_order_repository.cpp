// OrderRepository on SQLite: one file, WAL, shared by every instance on the host.
#include "common/database.h"
#include "order_repository.h"

namespace disco::order {
namespace {

using service::ConnectionPool;
using service::Guard;
using service::SqliteConnection;

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS orders ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " user_id INTEGER NOT NULL,"
    " product TEXT NOT NULL,"
    " quantity INTEGER NOT NULL,"
    " price_cents INTEGER NOT NULL,"
    " total_cents INTEGER NOT NULL,"
    " status TEXT NOT NULL,"
    " created_at TEXT NOT NULL,"
    " idempotency_key TEXT);"
    "CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, id)";

// Databases made before idempotency keys lack the column. The unique index
// (NULLs are distinct: orders without a key never collide) is what makes a
// key single-use per user across every instance sharing the file.
void Migrate(SqliteConnection& conn) {
  auto has_key = conn.Prepare(
      "SELECT count(*) FROM pragma_table_info('orders') WHERE name = 'idempotency_key'");
  bool present = has_key.Step() && has_key.Int(0) > 0;
  if (!present) conn.Exec("ALTER TABLE orders ADD COLUMN idempotency_key TEXT");
  conn.Exec(
      "CREATE UNIQUE INDEX IF NOT EXISTS orders_by_idempotency_key"
      " ON orders (user_id, idempotency_key)");
}

constexpr const char* kInsert =
    "INSERT INTO orders (user_id, product, quantity, price_cents, total_cents, status, created_at,"
    " idempotency_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULLIF(?8, ''))";
constexpr const char* kBegin = "BEGIN IMMEDIATE";
constexpr const char* kCommit = "COMMIT";
constexpr const char* kRollback = "ROLLBACK";
constexpr const char* kById =
    "SELECT id, user_id, product, quantity, price_cents, total_cents, status, created_at,"
    " idempotency_key FROM orders WHERE id = ?1";
constexpr const char* kByUser =
    "SELECT id, user_id, product, quantity, price_cents, total_cents, status, created_at,"
    " idempotency_key FROM orders WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2";
constexpr const char* kByKey =
    "SELECT id, user_id, product, quantity, price_cents, total_cents, status, created_at,"
    " idempotency_key FROM orders WHERE user_id = ?1 AND idempotency_key = ?2";

Order Row(const SqliteConnection::Statement& s) {
  return Order{s.Int(0), s.Int(1),  s.Text(2), s.Int(3), s.Int(4),
               s.Int(5), s.Text(6), s.Text(7), s.Text(8)};
}

class SqliteOrderRepository final : public OrderRepository {
 public:
  SqliteOrderRepository(std::string path, const service::StorageOptions& options)
      : pool_(
            [path, sync = options.sqlite_sync] {
              return SqliteConnection::Open(path, sync, kSchema, &Migrate);
            },
            options.connections) {}

  Result<void> Check() {
    auto lease = pool_.Acquire();
    if (!lease) return std::unexpected(lease.error());
    return {};
  }

  Result<Order> Create(const NewOrder& order) override {
    auto lease = pool_.Acquire();
    if (!lease) return std::unexpected(lease.error());
    return Guard<Order>(
        [&]() -> Result<Order> { return Insert(**lease, order, service::UtcTimestamp()); });
  }

  Result<std::optional<Order>> FindByIdempotencyKey(std::int64_t user_id,
                                                    std::string_view key) override {
    auto lease = pool_.Acquire();
    if (!lease) return std::unexpected(lease.error());
    return Guard<std::optional<Order>>([&]() -> Result<std::optional<Order>> {
      auto select = (*lease)->Prepare(kByKey);
      select.Bind(1, user_id).Bind(2, key);
      if (!select.Step()) return std::nullopt;
      return Row(select);
    });
  }

  Result<std::vector<Order>> ListByUser(std::int64_t user_id, std::size_t limit) override {
    auto lease = pool_.Acquire();
    if (!lease) return std::unexpected(lease.error());
    return Guard<std::vector<Order>>([&]() -> Result<std::vector<Order>> {
      auto select = (*lease)->Prepare(kByUser);
      select.Bind(1, user_id).Bind(2, static_cast<std::int64_t>(limit));
      std::vector<Order> out;
      while (select.Step()) out.push_back(Row(select));
      return out;
    });
  }

  Result<std::optional<Order>> FindById(std::int64_t id) override {
    auto lease = pool_.Acquire();
    if (!lease) return std::unexpected(lease.error());
    return Guard<std::optional<Order>>([&]() -> Result<std::optional<Order>> {
      auto select = (*lease)->Prepare(kById);
      select.Bind(1, id);
      if (!select.Step()) return std::nullopt;
      return Row(select);
    });
  }

 protected:
  Result<std::vector<Result<Order>>> CreateAll(std::span<const NewOrder* const> orders) override {
    using Results = std::vector<Result<Order>>;
    auto lease = pool_.Acquire();
    if (!lease) return std::unexpected(lease.error());
    return Guard<Results>([&]() -> Result<Results> {
      auto& conn = **lease;
      conn.Prepare(kBegin).Step();
      try {
        Results created;
        created.reserve(orders.size());
        const std::string now = service::UtcTimestamp();
        for (const NewOrder* order : orders) created.push_back(Insert(conn, *order, now));
        conn.Prepare(kCommit).Step();
        return created;
      } catch (...) {
        try {
          conn.Prepare(kRollback).Step();
        } catch (const service::StorageError&) {
          // Already rolled back by SQLite (it does so on some errors).
        }
        throw;
      }
    });
  }

 private:
  // A taken idempotency key fails only this statement (SQLite's default
  // ABORT backs out the statement, not the transaction around it).
  static Result<Order> Insert(SqliteConnection& conn, const NewOrder& order,
                              const std::string& now) {
    Order created = order.Created(now);
    auto insert = conn.Prepare(kInsert);
    insert.Bind(1, order.user_id)
        .Bind(2, order.product)
        .Bind(3, order.quantity)
        .Bind(4, order.price_cents);
    insert.Bind(5, order.total_cents).Bind(6, created.status).Bind(7, created.created_at);
    insert.Bind(8, order.idempotency_key);
    try {
      insert.Step();
    } catch (const service::StorageError& e) {
      // The only constraint an insert can break is the key's unique index.
      if (e.code == ErrorCode::kAlreadyExists && !order.idempotency_key.empty()) {
        return Fail(ErrorCode::kAlreadyExists, "idempotency key already used");
      }
      throw;
    }
    created.id = conn.LastInsertId();
    return created;
  }

  ConnectionPool<SqliteConnection> pool_;
};

}  // namespace

Result<std::unique_ptr<OrderRepository>> OpenSqliteOrderRepository(
    const std::string& path, const service::StorageOptions& options) {
  auto repo = std::make_unique<SqliteOrderRepository>(path, options);
  if (auto ok = repo->Check(); !ok) return std::unexpected(ok.error());
  return repo;
}

Result<std::unique_ptr<OrderRepository>> OpenOrderRepository(
    const service::DatabaseUrl& url, const service::StorageOptions& options) {
  switch (url.kind) {
    case service::DatabaseUrl::Kind::kPostgres:
      return OpenPostgresOrderRepository(url.target, options);
    case service::DatabaseUrl::Kind::kMysql:
      return OpenMysqlOrderRepository(url.target, options);
    case service::DatabaseUrl::Kind::kSqlite:
      break;
  }
  return OpenSqliteOrderRepository(url.target, options);
}

}  // namespace disco::order
