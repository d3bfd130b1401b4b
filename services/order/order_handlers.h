// The HTTP API of order-service: create, list and read orders.
//
// Creating an order confirms the caller's user exists by asking user-service
// through discovery (GET /api/users/me with the caller's token and request
// id; the client retries on other instances); user-service unavailable
// → 503. Database calls run on `db`, never on an I/O thread.
//
// A create with an Idempotency-Key header stores the key with the order
// (unique per user). The same key and order again get the first answer (201,
// the same body, plus Idempotent-Replayed: true) and create nothing; the key
// with a different order → 422 idempotency_key_reused; a malformed key → 400.
//
// Thread safety: the dependencies must outlive the router and be safe to use
// from several threads (they are).
#pragma once

#include <string>

#include "common/jwt.h"
#include "common/revocation.h"
#include "disco/http/blocking_pool.h"
#include "disco/http/client.h"
#include "disco/http/router.h"
#include "order_repository.h"

namespace disco::order {

struct OrderServiceDeps {
  OrderRepository* repository;
  service::JwtCodec* jwt;
  http::BlockingPool* db;
  http::Client* client;
  std::string user_service = "user-service";  // its name in the registry
  // Tokens revoked by logout are refused (--redis); null: no check.
  service::TokenRevocations* revocations = nullptr;
};

http::Router MakeOrderRouter(const OrderServiceDeps& deps);

}  // namespace disco::order
