// The HTTP API of user-service (see docs: register, login, me, users/{id}).
//
// Handlers run on the server's I/O threads; bcrypt runs on a niced pool
// behind the `bcrypt` admission queue (bounded, with a deadline, fair among
// clients: a refused or dropped login or registration is a 503 with
// Retry-After), database calls on `db`, so the event loop never blocks.
//
// Thread safety: the dependencies must outlive the router and be safe to use
// from several threads (they are).
#pragma once

#include "common/jwt.h"
#include "common/revocation.h"
#include "disco/http/admission_queue.h"
#include "disco/http/blocking_pool.h"
#include "disco/http/router.h"
#include "user_repository.h"

namespace disco::user {

struct UserServiceDeps {
  UserRepository* repository;
  service::JwtCodec* jwt;
  http::BlockingPool* db;
  http::AdmissionQueue* bcrypt;
  int bcrypt_cost = 12;
  std::size_t cache_entries = 10000;  // users cached by id; 0: none
  // Fair shares of bcrypt by the gateway's X-Client-Address (else by peer).
  bool trust_client_address = true;
  // A bcrypt hash at bcrypt_cost of a secret nobody knows; empty: made here.
  std::string dummy_hash{};
  // Logout and the revocation check of every authenticated route (--redis);
  // null or not enabled: logout answers 501.
  service::TokenRevocations* revocations = nullptr;
};

// Adds the user-service routes to a new router. Also computes, once, the
// dummy hash that makes a login for an unknown user cost as much as one with
// a wrong password (so timing does not tell which usernames exist).
http::Router MakeUserRouter(const UserServiceDeps& deps);

}  // namespace disco::user
