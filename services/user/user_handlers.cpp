#include "user_handlers.h"

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "common/admission.h"
#include "common/auth.h"
#include "common/json_body.h"
#include "common/json_writer.h"
#include "common/logging.h"
#include "common/password.h"
#include "validation.h"

namespace disco::user {
namespace {

using http::Awaitable;
using http::Request;
using http::Response;
// The user as JSON: on the hot path of every order (order-service
// confirms the user).
std::string PublicUser(const User& user, bool with_email) {
  std::string out;
  service::JsonWriter writer(out);
  writer.BeginObject().Field("id", user.id).Field("username", user.username);
  if (with_email) writer.Field("email", user.email);
  writer.Field("created_at", user.created_at).EndObject();
  return out;
}

// Users by id. Accounts never change once created (the API has no update or
// delete), so a cached user is never stale, whichever instance created it;
// missing users are not cached (another instance may create them). Bounded:
// when full, an arbitrary quarter is dropped. Password hashes are not kept
// (a login may upgrade one; logins read it from the database).
class UserCache {
 public:
  explicit UserCache(std::size_t capacity) : capacity_(capacity) {}

  // nullptr when not cached. Shared, so a hit copies no strings.
  std::shared_ptr<const User> Get(std::int64_t id) {
    if (capacity_ == 0) return nullptr;
    std::lock_guard lock(mu_);
    auto it = users_.find(id);
    return it == users_.end() ? nullptr : it->second;
  }

  void Put(const User& user) {
    if (capacity_ == 0) return;
    std::lock_guard lock(mu_);
    if (users_.size() >= capacity_) {
      for (std::size_t n = capacity_ / 4 + 1; n > 0 && !users_.empty(); --n)
        users_.erase(users_.begin());
    }
    auto copy = std::make_shared<User>(user);
    copy->password_hash.clear();
    users_.insert_or_assign(user.id, std::move(copy));
  }

 private:
  const std::size_t capacity_;
  std::mutex mu_;
  std::unordered_map<std::int64_t, std::shared_ptr<const User>> users_;
};

class UserApi {
 public:
  explicit UserApi(const UserServiceDeps& deps) : deps_(deps), cache_(deps.cache_entries) {
    dummy_hash_ = std::move(deps_.dummy_hash);
    if (dummy_hash_.empty()) {
      // A real bcrypt hash at the configured cost, of a random string nobody knows.
      auto hash = service::HashPassword(service::RandomSecret(), deps_.bcrypt_cost);
      dummy_hash_ = hash ? *hash : std::string();
    }
  }

  Awaitable<Response> Register(Request& request) {
    const auto arrived = std::chrono::steady_clock::now();
    service::JsonBody body;
    if (auto error = service::ParseJsonObject(request, body)) co_return std::move(*error);
    std::string username, password, email;
    if (auto error = service::ReadString(body, "username", username)) co_return std::move(*error);
    if (auto error = service::ReadString(body, "password", password)) co_return std::move(*error);
    if (auto error = service::ReadString(body, "email", email)) co_return std::move(*error);
    if (auto why = CheckUsername(username)) co_return service::FieldError("username", *why);
    if (auto why = CheckPassword(password)) co_return service::FieldError("password", *why);
    if (auto why = CheckEmail(email)) co_return service::FieldError("email", *why);

    // A taken name is answered before spending a bcrypt on it; the insert
    // below still catches two registrations racing for the same name.
    Result<std::optional<User>> existing;
    co_await deps_.db->Run([&] { existing = deps_.repository->FindByUsername(username); });
    if (!existing) co_return service::StorageFailure(existing.error(), request);
    if (*existing) co_return Taken(username);

    Result<std::string> hash;
    std::function<void()> make_hash = [&] {
      hash = service::HashPassword(password, deps_.bcrypt_cost);
    };
    auto admission = co_await Bcrypt(request, arrived, std::move(make_hash));
    if (!admission.ran()) co_return service::Overloaded(admission, "registration");
    if (!hash) co_return Response::Error(500, "internal", "hashing the password failed");

    Result<User> created;
    co_await deps_.db->Run([&] {
      created = deps_.repository->Create(NewUser{username, email, std::move(*hash)});
    });
    if (!created) {
      if (created.error().code == ErrorCode::kAlreadyExists) co_return Taken(username);
      co_return service::StorageFailure(created.error(), request);
    }
    cache_.Put(*created);
    service::LogRequest(request, spdlog::level::info, "registered user {} ({})", created->id,
                        created->username);
    auto response = Response::Json(201, PublicUser(*created, true));
    response.headers.emplace_back("Location", "/api/users/" + std::to_string(created->id));
    co_return response;
  }

  Awaitable<Response> Login(Request& request) {
    const auto arrived = std::chrono::steady_clock::now();
    service::JsonBody body;
    if (auto error = service::ParseJsonObject(request, body)) co_return std::move(*error);
    std::string username, password;
    if (auto error = service::ReadString(body, "username", username)) co_return std::move(*error);
    if (auto error = service::ReadString(body, "password", password)) co_return std::move(*error);
    if (username.empty()) co_return service::FieldError("username", "username is required");
    if (password.empty()) co_return service::FieldError("password", "password is required");

    Result<std::optional<User>> found;
    // Names that can never exist are not looked up, but still cost a bcrypt.
    if (!CheckUsername(username)) {
      co_await deps_.db->Run([&] { found = deps_.repository->FindByUsername(username); });
      if (!found) co_return service::StorageFailure(found.error(), request);
    } else {
      found = std::optional<User>();
    }
    bool ok = false;
    std::optional<std::string> upgraded;
    const std::string& hash = *found ? (*found)->password_hash : dummy_hash_;
    std::function<void()> verify = [&] {
      ok = service::VerifyPassword(password, hash);
      // An outdated hash is replaced now, while we have the password.
      if (ok && *found && service::NeedsRehash(password, hash)) {
        if (auto fresh = service::HashPassword(password, deps_.bcrypt_cost)) upgraded = *fresh;
      }
    };
    auto admission = co_await Bcrypt(request, arrived, std::move(verify));
    if (!admission.ran()) co_return service::Overloaded(admission, "login");
    if (!ok || !*found) {
      // One answer for "no such user" and "wrong password".
      co_return Response::Error(401, "invalid_credentials", "invalid username or password");
    }
    if (upgraded) co_await StoreUpgradedHash(**found, *upgraded, request);
    auto token = deps_.jwt->Issue((*found)->id, (*found)->username);
    if (!token) co_return Response::Error(500, "internal", "issuing the token failed");
    std::string out;
    service::JsonWriter(out)
        .BeginObject()
        .Field("expires_in", static_cast<std::int64_t>(deps_.jwt->ttl().count()))
        .Field("token", *token)
        .Field("token_type", "Bearer")
        .EndObject();
    co_return Response::Json(200, std::move(out));
  }

  Awaitable<Response> Me(Request& request, service::JwtClaims claims) {
    Result<std::shared_ptr<const User>> found;
    co_await Find(claims.user_id, found);
    if (!found) co_return service::StorageFailure(found.error(), request);
    if (!*found) {
      auto response = Response::Error(401, "invalid_token", "the token's user does not exist");
      response.headers.emplace_back("WWW-Authenticate", "Bearer");
      co_return response;
    }
    co_return Response::Json(200, PublicUser(**found, true));
  }

  // Revokes the caller's token until it expires (every replica and service
  // sharing the Redis then refuses it). Reached only with a valid, not yet
  // revoked token: logging out twice is a 401 token_revoked.
  Awaitable<Response> Logout(Request& request, service::JwtClaims claims) {
    if (deps_.revocations == nullptr || !deps_.revocations->enabled()) {
      co_return Response::Error(501, "revocation_not_configured",
                                "logout needs token revocation, which needs Redis: start the "
                                "services with --redis (DISCO_REDIS)");
    }
    if (claims.jti.empty()) {
      co_return Response::Error(400, "token_not_revocable",
                                "this token has no jti claim and cannot be revoked; it expires "
                                "on its own");
    }
    const std::int64_t expires_at = claims.expires_at;
    auto revoked = co_await deps_.revocations->Revoke(std::move(claims));
    if (!revoked) {
      service::LogRequest(request, spdlog::level::warn, "logout failed: {}",
                          revoked.error().ToString());
      auto response = Response::Error(
          503, "revocation_unavailable",
          "the token could not be revoked (Redis unavailable), try again (request id " +
              request.request_id + ")");
      response.headers.emplace_back("Retry-After", "1");
      co_return response;
    }
    std::string out;
    service::JsonWriter(out)
        .BeginObject()
        .Field("status", "logged_out")
        .Field("revoked_until", expires_at)
        .EndObject();
    co_return Response::Json(200, std::move(out));
  }

  Awaitable<Response> Get(Request& request, service::JwtClaims claims) {
    std::int64_t id = service::ParseId(request.Param("id"));
    if (id == 0) co_return NotFound();
    Result<std::shared_ptr<const User>> found;
    co_await Find(id, found);
    if (!found) co_return service::StorageFailure(found.error(), request);
    if (!*found) co_return NotFound();
    co_return Response::Json(200, PublicUser(**found, id == claims.user_id));
  }

 private:
  // Best effort: the login succeeds either way, and a hash not replaced now
  // is replaced at the next login.
  Awaitable<void> StoreUpgradedHash(const User& user, const std::string& fresh,
                                    const Request& request) {
    Result<bool> updated;
    co_await deps_.db->Run([&] {
      updated = deps_.repository->UpdatePasswordHash(user.id, user.password_hash, fresh);
    });
    if (!updated) {
      service::LogRequest(request, spdlog::level::warn,
                          "could not upgrade the password hash of user {}: {}", user.id,
                          updated.error().message);
    } else if (*updated) {
      service::LogRequest(request, spdlog::level::info, "upgraded the password hash of user {}",
                          user.id);
    }
  }

  // Runs a bcrypt through the admission queue, as the request's client, to
  // start in time for the caller (the gateway's X-Request-Timeout-Ms).
  Awaitable<http::Admission> Bcrypt(const Request& request,
                                    std::chrono::steady_clock::time_point arrived,
                                    std::function<void()> work) {
    auto* queue = deps_.bcrypt;
    auto start_by = service::StartBy(request, arrived, queue->ExpectedRun());
    co_return co_await queue->Run(service::ClientKey(request, deps_.trust_client_address),
                                  std::move(work), start_by);
  }

  // The user from the cache, else from the database (on the db pool).
  Awaitable<void> Find(std::int64_t id, Result<std::shared_ptr<const User>>& found) {
    if (auto cached = cache_.Get(id)) {
      found = std::move(cached);
      co_return;
    }
    Result<std::optional<User>> read;
    co_await deps_.db->Run([&] { read = deps_.repository->FindById(id); });
    if (!read) {
      found = std::unexpected(read.error());
    } else if (!*read) {
      found = nullptr;
    } else {
      cache_.Put(**read);
      found = std::make_shared<const User>(std::move(**read));
    }
  }

  static Response Taken(std::string_view username) {
    return Response::Error(409, "username_taken",
                           "username '" + std::string(username) + "' is already taken");
  }
  static Response NotFound() { return Response::Error(404, "not_found", "no such user"); }

  UserServiceDeps deps_;
  UserCache cache_;
  std::string dummy_hash_;
};

}  // namespace

http::Router MakeUserRouter(const UserServiceDeps& deps) {
  auto api = std::make_shared<UserApi>(deps);
  http::Router router;
  router.Add("POST", "/api/users/register", [api](Request& r) { return api->Register(r); });
  router.Add("POST", "/api/users/login", [api](Request& r) { return api->Login(r); });
  router.Add(
      "GET", "/api/users/me",
      service::Authenticated(
          *deps.jwt, [api](Request& r, service::JwtClaims c) { return api->Me(r, std::move(c)); },
          deps.revocations));
  router.Add("POST", "/api/users/logout",
             service::Authenticated(
                 *deps.jwt,
                 [api](Request& r, service::JwtClaims c) { return api->Logout(r, std::move(c)); },
                 deps.revocations));
  router.Add(
      "GET", "/api/users/{id}",
      service::Authenticated(
          *deps.jwt, [api](Request& r, service::JwtClaims c) { return api->Get(r, std::move(c)); },
          deps.revocations));
  return router;
}

}  // namespace disco::user
