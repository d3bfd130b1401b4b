// OrderRepository on MySQL/MariaDB (InnoDB): for instances on several hosts.
#include "common/database.h"
#include "common/mysql.h"
#include "order_repository.h"

namespace disco::order {
namespace {

using service::MysqlConnection;
using service::MysqlError;

// NULL keys are distinct in a unique index, so orders without a key never
// collide; the key compares byte for byte (binary collation, no padding).
const std::vector<std::string> kSchema = {
    "CREATE TABLE IF NOT EXISTS orders ("
    " id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,"
    " user_id BIGINT NOT NULL,"
    " product TEXT NOT NULL,"
    " quantity BIGINT NOT NULL,"
    " price_cents BIGINT NOT NULL,"
    " total_cents BIGINT NOT NULL,"
    " status VARCHAR(32) NOT NULL,"
    " created_at VARCHAR(32) NOT NULL,"
    " idempotency_key VARCHAR(255) NULL,"
    " KEY orders_by_user (user_id, id),"
    " UNIQUE KEY orders_by_idempotency_key (user_id, idempotency_key))"
    " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"};

constexpr const char* kInsert =
    "INSERT INTO orders (user_id, product, quantity, price_cents, total_cents, status, created_at,"
    " idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, NULLIF(?, ''))";
constexpr const char* kById =
    "SELECT id, user_id, product, quantity, price_cents, total_cents, status, created_at,"
    " idempotency_key FROM orders WHERE id = ?";
constexpr const char* kByUser =
    "SELECT id, user_id, product, quantity, price_cents, total_cents, status, created_at,"
    " idempotency_key FROM orders WHERE user_id = ? ORDER BY id DESC LIMIT ?";
constexpr const char* kByKey =
    "SELECT id, user_id, product, quantity, price_cents, total_cents, status, created_at,"
    " idempotency_key FROM orders WHERE user_id = ? AND idempotency_key = ?";
constexpr const char* kBegin = "START TRANSACTION";
constexpr const char* kCommit = "COMMIT";
constexpr const char* kRollback = "ROLLBACK";
// A batch InnoDB chose as a deadlock victim was rolled back whole (nothing
// of it is in doubt), so it is run again, at most this often.
constexpr int kDeadlockAttempts = 3;

Order Row(const MysqlConnection::Statement& s) {
  return Order{s.Int(0), s.Int(1),  s.Text(2), s.Int(3), s.Int(4),
               s.Int(5), s.Text(6), s.Text(7), s.Text(8)};
}

std::optional<Order> First(MysqlConnection::Statement& s) {
  if (!s.Next()) return std::nullopt;
  return Row(s);
}

class MysqlOrderRepository final : public OrderRepository {
 public:
  MysqlOrderRepository(service::MysqlUrl url, const service::StorageOptions& options)
      : pool_(std::move(url), kSchema, options.connections) {}

  Result<void> Check() { return pool_.Check(); }

  Result<Order> Create(const NewOrder& order) override {
    return pool_.Run<Order>([&](MysqlConnection& conn) -> Result<Order> {
      return Insert(conn, order, service::UtcTimestamp());  // autocommit: durable when it returns
    });
  }

  Result<std::optional<Order>> FindByIdempotencyKey(std::int64_t user_id,
                                                    std::string_view key) override {
    return pool_.Read<std::optional<Order>>(
        [&](MysqlConnection& conn) -> Result<std::optional<Order>> {
          auto select = conn.Prepare(kByKey);
          select.Bind(1, user_id).Bind(2, key).Execute();
          return First(select);
        });
  }

  Result<std::vector<Order>> ListByUser(std::int64_t user_id, std::size_t limit) override {
    return pool_.Read<std::vector<Order>>([&](MysqlConnection& conn) -> Result<std::vector<Order>> {
      auto select = conn.Prepare(kByUser);
      select.Bind(1, user_id).Bind(2, static_cast<std::int64_t>(limit)).Execute();
      std::vector<Order> out;
      while (select.Next()) out.push_back(Row(select));
      return out;
    });
  }

  Result<std::optional<Order>> FindById(std::int64_t id) override {
    return pool_.Read<std::optional<Order>>(
        [&](MysqlConnection& conn) -> Result<std::optional<Order>> {
          auto select = conn.Prepare(kById);
          select.Bind(1, id).Execute();
          return First(select);
        });
  }

 protected:
  Result<std::vector<Result<Order>>> CreateAll(std::span<const NewOrder* const> orders) override {
    using Results = std::vector<Result<Order>>;
    return pool_.Run<Results>([&](MysqlConnection& conn) -> Result<Results> {
      for (int attempt = 1;; ++attempt) {
        conn.Exec(kBegin);
        try {
          Results created;
          created.reserve(orders.size());
          const std::string now = service::UtcTimestamp();
          for (const NewOrder* order : orders) created.push_back(Insert(conn, *order, now));
          conn.Exec(kCommit);
          return created;
        } catch (const MysqlError& e) {
          if (!conn.broken()) {
            try {
              conn.Exec(kRollback);
            } catch (const MysqlError&) {
              // The connection is broken now: the pool drops it.
            }
          }
          if (e.number != service::kMysqlDeadlock || attempt == kDeadlockAttempts) throw;
        }
      }
    });
  }

 private:
  // A taken idempotency key fails only this statement: InnoDB backs out the
  // statement, not the transaction around it.
  static Result<Order> Insert(MysqlConnection& conn, const NewOrder& order,
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
      insert.Execute();
    } catch (const MysqlError& e) {
      // The only unique key an insert can break is the idempotency key's.
      if (e.number == service::kMysqlDuplicateEntry && !order.idempotency_key.empty())
        return Fail(ErrorCode::kAlreadyExists, "idempotency key already used");
      throw;
    }
    created.id = insert.InsertId();
    return created;
  }

  service::MysqlPool pool_;
};

}  // namespace

Result<std::unique_ptr<OrderRepository>> OpenMysqlOrderRepository(
    const std::string& url, const service::StorageOptions& options) {
  auto parsed = service::ParseMysqlUrl(url);
  if (!parsed) return std::unexpected(parsed.error());
  auto repo = std::make_unique<MysqlOrderRepository>(std::move(*parsed), options);
  if (auto ok = repo->Check(); !ok) return std::unexpected(ok.error());
  return repo;
}

}  // namespace disco::order
