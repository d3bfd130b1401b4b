// The demo services' JSON response bodies (issue 13): service::JsonWriter,
// which they all write through, against an nlohmann document with the same
// keys, for the bodies on every request's path.
//
//   BM_Order/writer    BM_Order/nlohmann      one order (POST /api/orders, GET /api/orders/{id})
//   BM_User/writer     BM_User/nlohmann       one user (GET /api/users/me: every order confirms
//   one) BM_OrderList/100/writer ...               GET /api/orders with 100 orders
//
// Both sides produce the same bytes (checked before timing). Figures and the
// command that produced them: docs/benchmarks.md.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/json_writer.h"

namespace {

using disco::service::JsonWriter;
using json = nlohmann::json;

// The fields services/order writes; prices already formatted (FormatCents
// costs both sides the same).
struct Order {
  std::string created_at = "2026-12-04T07:00:00Z";
  std::int64_t id = 123456;
  std::string price = "19.99";
  std::int64_t price_cents = 1999;
  std::string product = "Mechanical keyboard (brown switches)";
  std::int64_t quantity = 3;
  std::string status = "created";
  std::string total = "59.97";
  std::int64_t total_cents = 5997;
  std::int64_t user_id = 42;
};

struct User {
  std::int64_t id = 42;
  std::string username = "alice_1984";
  std::string email = "alice@example.com";
  std::string created_at = "2026-12-04T07:00:00Z";
};

void WriteOrder(JsonWriter& writer, const Order& o) {
  writer.BeginObject()
      .Field("created_at", o.created_at)
      .Field("id", o.id)
      .Field("price", o.price)
      .Field("price_cents", o.price_cents)
      .Field("product", o.product)
      .Field("quantity", o.quantity)
      .Field("status", o.status)
      .Field("total", o.total)
      .Field("total_cents", o.total_cents)
      .Field("user_id", o.user_id)
      .EndObject();
}

json OrderDocument(const Order& o) {
  return {{"created_at", o.created_at},   {"id", o.id},           {"price", o.price},
          {"price_cents", o.price_cents}, {"product", o.product}, {"quantity", o.quantity},
          {"status", o.status},           {"total", o.total},     {"total_cents", o.total_cents},
          {"user_id", o.user_id}};
}

std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string OrderByWriter(const Order& o) {
  std::string out;
  JsonWriter writer(out);
  WriteOrder(writer, o);
  return out;
}
std::string OrderByNlohmann(const Order& o) { return Dump(OrderDocument(o)); }

std::string UserByWriter(const User& u) {
  std::string out;
  JsonWriter(out)
      .BeginObject()
      .Field("id", u.id)
      .Field("username", u.username)
      .Field("email", u.email)
      .Field("created_at", u.created_at)
      .EndObject();
  return out;
}
// An nlohmann object sorts its keys; the user body's order is id, username,
// email, created_at, so the document is an ordered_json.
std::string UserByNlohmann(const User& u) {
  nlohmann::ordered_json doc = {
      {"id", u.id}, {"username", u.username}, {"email", u.email}, {"created_at", u.created_at}};
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ListByWriter(const std::vector<Order>& orders) {
  std::string out;
  JsonWriter writer(out);
  writer.BeginObject().Field("count", static_cast<std::int64_t>(orders.size()));
  writer.Key("orders").BeginArray();
  for (const Order& o : orders) WriteOrder(writer, o);
  writer.EndArray().EndObject();
  return out;
}
std::string ListByNlohmann(const std::vector<Order>& orders) {
  json list = json::array();
  for (const Order& o : orders) list.push_back(OrderDocument(o));
  return Dump(json{{"count", orders.size()}, {"orders", std::move(list)}});
}

void Same(const std::string& a, const std::string& b) {
  if (a != b) {
    std::fprintf(stderr, "bodies differ:\n%s\n%s\n", a.c_str(), b.c_str());
    std::abort();
  }
}

void BM_Order(benchmark::State& state, std::string (*write)(const Order&)) {
  Order order;
  Same(OrderByWriter(order), OrderByNlohmann(order));
  for (auto _ : state) benchmark::DoNotOptimize(write(order));
}
BENCHMARK_CAPTURE(BM_Order, writer, OrderByWriter);
BENCHMARK_CAPTURE(BM_Order, nlohmann, OrderByNlohmann);

void BM_User(benchmark::State& state, std::string (*write)(const User&)) {
  User user;
  Same(UserByWriter(user), UserByNlohmann(user));
  for (auto _ : state) benchmark::DoNotOptimize(write(user));
}
BENCHMARK_CAPTURE(BM_User, writer, UserByWriter);
BENCHMARK_CAPTURE(BM_User, nlohmann, UserByNlohmann);

void BM_OrderList(benchmark::State& state, std::string (*write)(const std::vector<Order>&)) {
  std::vector<Order> orders(static_cast<std::size_t>(state.range(0)));
  Same(ListByWriter(orders), ListByNlohmann(orders));
  for (auto _ : state) benchmark::DoNotOptimize(write(orders));
}
BENCHMARK_CAPTURE(BM_OrderList, writer, ListByWriter)->Arg(100);
BENCHMARK_CAPTURE(BM_OrderList, nlohmann, ListByNlohmann)->Arg(100);

}  // namespace

BENCHMARK_MAIN();
