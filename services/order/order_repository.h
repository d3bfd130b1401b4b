// OrderRepository: where order-service keeps orders. SQLite (default),
// PostgreSQL and MySQL/MariaDB behind one interface, run through the same tests.
//
// Thread safety: every method may be called from any thread at once; calls
// block on the database (run them on a BlockingPool).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/database.h"
#include "disco/error.h"

namespace disco::order {

struct Order {
  std::int64_t id = 0;
  std::int64_t user_id = 0;
  std::string product;
  std::int64_t quantity = 0;
  std::int64_t price_cents = 0;
  std::int64_t total_cents = 0;
  std::string status;             // "created"
  std::string created_at;         // UtcTimestamp()
  std::string idempotency_key{};  // empty: created without one
};

struct NewOrder {
  std::int64_t user_id = 0;
  std::string product;
  std::int64_t quantity = 0;
  std::int64_t price_cents = 0;
  std::int64_t total_cents = 0;
  // The client's Idempotency-Key, unique per user (empty: none). A second
  // order of the same user with the same key is refused (kAlreadyExists).
  std::string idempotency_key{};

  // The order as it is stored: status "created", no id until the insert.
  Order Created(std::string now) const {
    return Order{0,           user_id,   product,        quantity,       price_cents,
                 total_cents, "created", std::move(now), idempotency_key};
  }
};

class OrderRepository {
 public:
  virtual ~OrderRepository() = default;

  // Returns once the order is durably committed. Errors: kAlreadyExists (the
  // user already has an order with this idempotency key: nothing was
  // written), kUnavailable.
  virtual Result<Order> Create(const NewOrder& order) = 0;
  // Creates the orders in one transaction, so that one commit (one WAL
  // append and sync) serves them all: group commit. Returns once they are
  // durably committed, one result per order, in order (kAlreadyExists for an
  // order whose idempotency key is taken, as Create() would say). If the
  // transaction fails, every order gets its error and none was written: no
  // order-by-order retry here, as a failed commit may be in doubt
  // (PostgreSQL) and a second write could then create an order twice.
  std::vector<Result<Order>> CreateMany(std::span<const NewOrder* const> orders) {
    if (orders.size() == 1) return {Create(*orders[0])};
    auto all = CreateAll(orders);
    if (all) return std::move(*all);
    return std::vector<Result<Order>>(orders.size(), std::unexpected(all.error()));
  }
  // The user's order made with idempotency key `key`, if any.
  virtual Result<std::optional<Order>> FindByIdempotencyKey(std::int64_t user_id,
                                                            std::string_view key) = 0;
  // The user's orders, newest first, at most `limit`.
  virtual Result<std::vector<Order>> ListByUser(std::int64_t user_id, std::size_t limit) = 0;
  virtual Result<std::optional<Order>> FindById(std::int64_t id) = 0;

 protected:
  // Every order in one transaction, committed, one result per order (an
  // order whose idempotency key is taken: kAlreadyExists, nothing written for
  // it); or an error and none of them written.
  virtual Result<std::vector<Result<Order>>> CreateAll(std::span<const NewOrder* const> orders) = 0;
};

Result<std::unique_ptr<OrderRepository>> OpenOrderRepository(
    const service::DatabaseUrl& url, const service::StorageOptions& options);
Result<std::unique_ptr<OrderRepository>> OpenSqliteOrderRepository(
    const std::string& path, const service::StorageOptions& options);
Result<std::unique_ptr<OrderRepository>> OpenPostgresOrderRepository(
    const std::string& url, const service::StorageOptions& options);
Result<std::unique_ptr<OrderRepository>> OpenMysqlOrderRepository(
    const std::string& url, const service::StorageOptions& options);

}  // namespace disco::order
