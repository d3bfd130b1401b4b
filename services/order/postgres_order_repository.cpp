// OrderRepository on PostgreSQL (libpqxx): for instances on several hosts.
#include "common/database.h"
#include "common/postgres.h"
#include "order_repository.h"

namespace disco::order {
namespace {

// The column and the unique index came with idempotency keys; ADD COLUMN IF
// NOT EXISTS migrates databases made before them (under the schema lock).
// NULL keys are distinct, so orders without a key never collide.
constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS orders ("
    " id BIGSERIAL PRIMARY KEY,"
    " user_id BIGINT NOT NULL,"
    " product TEXT NOT NULL,"
    " quantity INTEGER NOT NULL,"
    " price_cents BIGINT NOT NULL,"
    " total_cents BIGINT NOT NULL,"
    " status TEXT NOT NULL,"
    " created_at TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, id);"
    "ALTER TABLE orders ADD COLUMN IF NOT EXISTS idempotency_key TEXT;"
    "CREATE UNIQUE INDEX IF NOT EXISTS orders_by_idempotency_key"
    " ON orders (user_id, idempotency_key)";

void PrepareStatements(pqxx::connection& conn) {
  // ON CONFLICT DO NOTHING: a key already used gives no row (and no error in
  // the server's log); a concurrent insert of the same key waits for the
  // first to commit, then gives no row.
  conn.prepare("order_insert",
               "INSERT INTO orders (user_id, product, quantity, price_cents, total_cents, status, "
               "created_at, idempotency_key)"
               " VALUES ($1, $2, $3, $4, $5, $6, $7, NULLIF($8, ''))"
               " ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING id");
  conn.prepare(
      "order_by_id",
      "SELECT id, user_id, product, quantity, price_cents, total_cents, status, created_at,"
      " idempotency_key FROM orders WHERE id = $1");
  conn.prepare(
      "orders_by_user",
      "SELECT id, user_id, product, quantity, price_cents, total_cents, status, created_at,"
      " idempotency_key FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT $2");
  conn.prepare(
      "order_by_key",
      "SELECT id, user_id, product, quantity, price_cents, total_cents, status, created_at,"
      " idempotency_key FROM orders WHERE user_id = $1 AND idempotency_key = $2");
}

Order Row(const pqxx::row& r) {
  return Order{r[0].as<std::int64_t>(), r[1].as<std::int64_t>(), r[2].as<std::string>(),
               r[3].as<std::int64_t>(), r[4].as<std::int64_t>(), r[5].as<std::int64_t>(),
               r[6].as<std::string>(),  r[7].as<std::string>(),  r[8].as<std::string>("")};
}

class PostgresOrderRepository final : public OrderRepository {
 public:
  PostgresOrderRepository(std::string url, const service::StorageOptions& options)
      : pool_(std::move(url), kSchema, PrepareStatements, options.connections) {}

  Result<void> Check() { return pool_.Check(); }

  Result<Order> Create(const NewOrder& order) override {
    return pool_.Run<Order>([&](pqxx::connection& conn) -> Result<Order> {
      pqxx::nontransaction txn(conn);  // one statement: autocommit, durable when it returns
      return Insert(txn, order, service::UtcTimestamp());
    });
  }

  Result<std::optional<Order>> FindByIdempotencyKey(std::int64_t user_id,
                                                    std::string_view key) override {
    return pool_.Run<std::optional<Order>>(
        [&](pqxx::connection& conn) -> Result<std::optional<Order>> {
          pqxx::nontransaction txn(conn);
          auto rows = txn.exec_prepared("order_by_key", user_id, std::string(key));
          if (rows.empty()) return std::nullopt;
          return Row(rows[0]);
        });
  }

  Result<std::vector<Order>> ListByUser(std::int64_t user_id, std::size_t limit) override {
    return pool_.Run<std::vector<Order>>([&](pqxx::connection& conn) -> Result<std::vector<Order>> {
      pqxx::nontransaction txn(conn);
      auto rows = txn.exec_prepared("orders_by_user", user_id, static_cast<std::int64_t>(limit));
      std::vector<Order> out;
      out.reserve(rows.size());
      for (const auto& row : rows) out.push_back(Row(row));
      return out;
    });
  }

  Result<std::optional<Order>> FindById(std::int64_t id) override {
    return pool_.Run<std::optional<Order>>(
        [&](pqxx::connection& conn) -> Result<std::optional<Order>> {
          pqxx::nontransaction txn(conn);
          auto rows = txn.exec_prepared("order_by_id", id);
          if (rows.empty()) return std::nullopt;
          return Row(rows[0]);
        });
  }

 protected:
  Result<std::vector<Result<Order>>> CreateAll(std::span<const NewOrder* const> orders) override {
    using Results = std::vector<Result<Order>>;
    return pool_.Run<Results>([&](pqxx::connection& conn) -> Result<Results> {
      pqxx::work txn(conn);  // aborted by its destructor unless committed
      Results created;
      created.reserve(orders.size());
      const std::string now = service::UtcTimestamp();
      for (const NewOrder* order : orders) created.push_back(Insert(txn, *order, now));
      txn.commit();
      return created;
    });
  }

 private:
  // ON CONFLICT DO NOTHING (order_insert): a taken key gives no row, and the
  // transaction goes on.
  static Result<Order> Insert(pqxx::transaction_base& txn, const NewOrder& order,
                              const std::string& now) {
    Order created = order.Created(now);
    auto rows = txn.exec_prepared("order_insert", order.user_id, order.product, order.quantity,
                                  order.price_cents, order.total_cents, created.status,
                                  created.created_at, order.idempotency_key);
    if (rows.empty()) return Fail(ErrorCode::kAlreadyExists, "idempotency key already used");
    created.id = rows[0][0].as<std::int64_t>();
    return created;
  }

  service::PostgresPool pool_;
};

}  // namespace

Result<std::unique_ptr<OrderRepository>> OpenPostgresOrderRepository(
    const std::string& url, const service::StorageOptions& options) {
  auto repo = std::make_unique<PostgresOrderRepository>(url, options);
  if (auto ok = repo->Check(); !ok) return std::unexpected(ok.error());
  return repo;
}

}  // namespace disco::order
