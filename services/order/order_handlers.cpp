#include "order_handlers.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/auth.h"
#include "common/json_body.h"
#include "common/json_writer.h"
#include "common/logging.h"
#include "disco/metrics.h"
#include "money.h"

namespace disco::order {
namespace {

using http::Awaitable;
using http::Request;
using http::Response;
using json = nlohmann::json;

constexpr std::size_t kMaxProductChars = 200;
constexpr std::size_t kListLimit = 1000;
constexpr std::size_t kMaxIdempotencyKeyChars = 255;
constexpr std::string_view kIdempotencyKey = "Idempotency-Key";

// The order as JSON (on every order's path). Keys in the order an nlohmann
// document wrote them (sorted), as the bodies always were.
void WriteOrder(service::JsonWriter& writer, const Order& o) {
  writer.BeginObject()
      .Field("created_at", o.created_at)
      .Field("id", o.id)
      .Field("price", FormatCents(o.price_cents))
      .Field("price_cents", o.price_cents)
      .Field("product", o.product)
      .Field("quantity", o.quantity)
      .Field("status", o.status)
      .Field("total", FormatCents(o.total_cents))
      .Field("total_cents", o.total_cents)
      .Field("user_id", o.user_id)
      .EndObject();
}

std::string OrderJson(const Order& o) {
  std::string out;
  out.reserve(256 + o.product.size());
  service::JsonWriter writer(out);
  WriteOrder(writer, o);
  return out;
}

// The top-level "id" of a JSON object (the last one, as a document would
// keep), read without building a document: user-service's answer is read
// on every order.
std::optional<std::int64_t> TopLevelId(const std::string& text) {
  struct Reader {
    bool null() { return Value(); }
    bool boolean(bool) { return Value(); }
    bool number_integer(json::number_integer_t v) {
      if (at_id_) id_ = v;
      return Value();
    }
    bool number_unsigned(json::number_unsigned_t v) {
      if (at_id_ && v <= static_cast<json::number_unsigned_t>(INT64_MAX))
        id_ = static_cast<std::int64_t>(v);
      return Value();
    }
    bool number_float(json::number_float_t, const std::string&) { return Value(); }
    bool string(std::string&) { return Value(); }
    bool binary(json::binary_t&) { return Value(); }
    bool start_object(std::size_t) {
      Value();
      return ++depth_ <= 16;
    }
    bool key(std::string& k) {
      at_id_ = depth_ == 1 && k == "id";
      return true;
    }
    bool end_object() {
      --depth_;
      return true;
    }
    bool start_array(std::size_t) {
      Value();
      return ++depth_ <= 16;
    }
    bool end_array() {
      --depth_;
      return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
      return false;
    }
    bool Value() {
      at_id_ = false;
      return true;
    }

    int depth_ = 0;
    bool at_id_ = false;
    std::optional<std::int64_t> id_;
  } reader;
  if (!json::sax_parse(text, &reader)) return std::nullopt;
  return reader.id_;
}

// An order waiting for its group commit.
struct PendingOrder final : http::BatchItem {
  const NewOrder* order = nullptr;
  Result<Order> created;
};

std::optional<std::string> CheckProduct(std::string_view product) {
  std::size_t chars = 0;
  bool blank = true;
  for (char c : product) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return "product must not contain control characters";
    if (c != ' ') blank = false;
    if ((u & 0xc0) != 0x80) ++chars;
  }
  if (blank) return "product must not be empty";
  if (chars > kMaxProductChars) return "product must be at most 200 characters";
  return std::nullopt;
}

// 1-255 visible ASCII characters (a UUID is the usual choice).
std::optional<http::Response> CheckIdempotencyKey(std::string_view key) {
  bool visible = std::ranges::all_of(key, [](char c) { return c > 0x20 && c < 0x7f; });
  if (key.empty() || key.size() > kMaxIdempotencyKeyChars || !visible) {
    return Response::Error(400, "invalid_idempotency_key",
                           "Idempotency-Key must be 1-255 visible ASCII characters (no spaces)");
  }
  return std::nullopt;
}

// Whether a request repeats the order made with the same key.
bool SameOrder(const Order& stored, const NewOrder& order) {
  return stored.product == order.product && stored.quantity == order.quantity &&
         stored.price_cents == order.price_cents;
}

Response Created(const Order& order) {
  auto response = Response::Json(201, OrderJson(order));
  response.headers.emplace_back("Location", "/api/orders/" + std::to_string(order.id));
  return response;
}

class OrderApi {
 public:
  explicit OrderApi(const OrderServiceDeps& deps)
      : deps_(deps),
        batch_sizes_(&MetricsRegistry::Default()
                          .HistogramFamily("order_service_commit_batch_size",
                                           "Orders created per database transaction (group commit)",
                                           {}, kBatchBounds)
                          .With({})),
        writes_(*deps.db, [this](std::span<http::BatchItem* const> batch) { WriteBatch(batch); }) {
  }

  Awaitable<Response> Create(Request& request, service::JwtClaims claims) {
    const bool keyed = request.HasHeader(kIdempotencyKey);
    if (keyed) {
      if (auto error = CheckIdempotencyKey(request.Header(kIdempotencyKey)))
        co_return std::move(*error);
    }

    service::JsonBody body;
    if (auto error = service::ParseJsonObject(request, body)) co_return std::move(*error);
    NewOrder order;
    order.user_id = claims.user_id;
    if (auto error = service::ReadString(body, "product", order.product))
      co_return std::move(*error);
    if (auto why = CheckProduct(order.product)) co_return service::FieldError("product", *why);
    if (auto error = service::ReadInteger(body, "quantity", order.quantity))
      co_return std::move(*error);
    if (order.quantity < kMinQuantity || order.quantity > kMaxQuantity) {
      co_return service::FieldError("quantity", "quantity must be 1-10000");
    }
    auto price = body.value.find("price");
    if (price == body.value.end() || price->is_null())
      co_return service::FieldError("price", "price is required");
    Result<std::int64_t> cents;
    if (price->is_string()) {
      cents = ParsePrice(price->get_ref<const std::string&>());
    } else if (price->is_number()) {
      cents = ParsePrice(body.raw_numbers["price"]);
    } else {
      co_return service::FieldError("price", "price must be a number or a decimal string");
    }
    if (!cents) co_return service::FieldError("price", cents.error().message);
    order.price_cents = *cents;
    auto total = Total(order.price_cents, order.quantity);
    if (!total) co_return service::FieldError("price", total.error().message);
    order.total_cents = *total;

    if (keyed) order.idempotency_key = std::string(request.Header(kIdempotencyKey));

    if (auto refused = co_await ConfirmUser(request, claims)) co_return std::move(*refused);

    // Group commit: the insert shares its transaction (and its commit) with
    // the other orders waiting at that moment; answered once committed.
    PendingOrder pending;
    pending.order = &order;
    co_await writes_.Submit(pending);
    auto& created = pending.created;
    if (!created && keyed && created.error().code == ErrorCode::kAlreadyExists) {
      co_return co_await Replay(request, order);
    }
    if (!created) co_return service::StorageFailure(created.error(), request);
    co_return Created(*created);
  }

  Awaitable<Response> List(Request& request, service::JwtClaims claims) {
    Result<std::vector<Order>> orders;
    co_await deps_.db->Run(
        [&] { orders = deps_.repository->ListByUser(claims.user_id, kListLimit); });
    if (!orders) co_return service::StorageFailure(orders.error(), request);
    std::string body;
    service::JsonWriter writer(body);
    writer.BeginObject().Field("count", static_cast<std::int64_t>(orders->size()));
    writer.Key("orders").BeginArray();
    for (const Order& order : *orders) WriteOrder(writer, order);
    writer.EndArray().EndObject();
    co_return Response::Json(200, std::move(body));
  }

  Awaitable<Response> Get(Request& request, service::JwtClaims claims) {
    std::int64_t id = service::ParseId(request.Param("id"));
    if (id == 0) co_return NotFound();
    Result<std::optional<Order>> found;
    co_await deps_.db->Run([&] { found = deps_.repository->FindById(id); });
    if (!found) co_return service::StorageFailure(found.error(), request);
    // Someone else's order looks exactly like a missing one.
    if (!*found || (*found)->user_id != claims.user_id) co_return NotFound();
    co_return Response::Json(200, OrderJson(**found));
  }

 private:
  static constexpr double kBatchBounds[] = {1, 2, 4, 8, 16, 32, 64};

  // On the db pool: the orders waiting together, in one transaction.
  void WriteBatch(std::span<http::BatchItem* const> batch) {
    std::vector<const NewOrder*> orders;
    orders.reserve(batch.size());
    for (auto* item : batch) orders.push_back(static_cast<PendingOrder*>(item)->order);
    auto created = deps_.repository->CreateMany(orders);
    for (std::size_t i = 0; i < batch.size(); ++i)
      static_cast<PendingOrder*>(batch[i])->created = std::move(created[i]);
    batch_sizes_->Observe(static_cast<double>(batch.size()));
  }

  static Response NotFound() { return Response::Error(404, "not_found", "no such order"); }

  // The user already made an order with this Idempotency-Key (a retry, or a
  // client sending the same request twice): the same request gets the first
  // answer again (201, the same body, plus Idempotent-Replayed: true) and
  // creates nothing; another order under the same key is refused with 422.
  Awaitable<Response> Replay(const Request& request, const NewOrder& order) {
    Result<std::optional<Order>> found;
    co_await deps_.db->Run([&] {
      found = deps_.repository->FindByIdempotencyKey(order.user_id, order.idempotency_key);
    });
    if (!found) co_return service::StorageFailure(found.error(), request);
    if (!*found) {
      // Unique violation without a row: cannot happen (orders are never deleted).
      co_return service::StorageFailure(
          Error{ErrorCode::kUnavailable, "idempotency key conflict without an order"}, request);
    }
    const Order& first = **found;
    if (!SameOrder(first, order)) {
      co_return Response::Error(
          422, "idempotency_key_reused",
          "Idempotency-Key was already used for order " + std::to_string(first.id) +
              " with a different product, quantity or price; use a new key for a new order");
    }
    auto response = Created(first);
    response.headers.emplace_back("Idempotent-Replayed", "true");
    co_return response;
  }

  // Asks user-service whether the token's user exists. nullopt: confirmed.
  Awaitable<std::optional<Response>> ConfirmUser(const Request& request,
                                                 const service::JwtClaims& claims) {
    http::ClientRequest call;
    call.method = "GET";
    call.url = "http://" + deps_.user_service + "/api/users/me";
    call.request_id = request.request_id;
    call.traceparent = request.traceparent;
    call.authorization = std::string(request.Header("Authorization"));
    auto answer = co_await deps_.client->Send(std::move(call));
    if (!answer) {
      service::LogRequest(request, spdlog::level::warn, "confirming user {} failed: {}",
                          claims.user_id, answer.error().ToString());
      co_return Response::Error(
          503, "user_service_unavailable",
          deps_.user_service +
              " is unavailable, so the user cannot be confirmed: " + answer.error().message);
    }
    if (answer->status == 200) {
      if (TopLevelId(answer->body) == claims.user_id) co_return std::nullopt;
      co_return Response::Error(401, "invalid_token", "the token's user does not exist");
    }
    if (answer->status == 401 || answer->status == 404) {
      co_return Response::Error(401, "invalid_token", "the token's user does not exist");
    }
    service::LogRequest(request, spdlog::level::warn, "{} answered {} when confirming user {}",
                        deps_.user_service, answer->status, claims.user_id);
    co_return Response::Error(503, "user_service_unavailable",
                              deps_.user_service + " could not confirm the user (it answered " +
                                  std::to_string(answer->status) + ")");
  }

  OrderServiceDeps deps_;
  Histogram* batch_sizes_;
  http::BatchQueue writes_;  // inserts, in group commits on deps_.db (WriteBatch)
};

}  // namespace

http::Router MakeOrderRouter(const OrderServiceDeps& deps) {
  auto api = std::make_shared<OrderApi>(deps);
  http::Router router;
  // Every order route is the caller's own: all of them authenticate.
  auto authenticated = [&deps](service::AuthenticatedHandler handler) {
    return service::Authenticated(*deps.jwt, std::move(handler), deps.revocations);
  };
  router.Add("POST", "/api/orders", authenticated([api](Request& r, service::JwtClaims c) {
               return api->Create(r, std::move(c));
             }));
  router.Add("GET", "/api/orders", authenticated([api](Request& r, service::JwtClaims c) {
               return api->List(r, std::move(c));
             }));
  router.Add("GET", "/api/orders/{id}", authenticated([api](Request& r, service::JwtClaims c) {
               return api->Get(r, std::move(c));
             }));
  return router;
}

}  // namespace disco::order
