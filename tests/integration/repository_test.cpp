// The repositories of user-service and order-service, one set of cases run
// against both implementations: SQLite (a temp file) and PostgreSQL (a real
// server started for the test).
#include <gtest/gtest.h>

#include <memory>
#include <thread>

#include "fixture/postgres_server.h"
#include "fixture/util.h"
#include "order/order_repository.h"
#include "user/user_repository.h"

namespace disco {
namespace {

enum class Backend { kSqlite, kPostgres };

class RepositoryTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kPostgres) {
      postgres_ = std::make_unique<testing::PostgresServer>();
      url_ = *service::ParseDatabaseUrl(postgres_->CreateDatabase("repo_test"));
    } else {
      url_ = *service::ParseDatabaseUrl(dir_.Sub("test.db"));
    }
  }

  std::unique_ptr<user::UserRepository> Users() {
    auto repo = user::OpenUserRepository(url_, {});
    EXPECT_TRUE(repo) << repo.error().ToString();
    return std::move(*repo);
  }
  std::unique_ptr<order::OrderRepository> Orders() {
    auto repo = order::OpenOrderRepository(url_, {});
    EXPECT_TRUE(repo) << repo.error().ToString();
    return std::move(*repo);
  }

  testing::TempDir dir_{"disco-repo"};
  std::unique_ptr<testing::PostgresServer> postgres_;
  service::DatabaseUrl url_;
};

TEST_P(RepositoryTest, UsersCreateFindAndUniqueNames) {
  auto users = Users();
  auto alice = users->Create({"alice", "alice@example.com", "$2b$04$hash"});
  ASSERT_TRUE(alice) << alice.error().ToString();
  EXPECT_GT(alice->id, 0);
  EXPECT_FALSE(alice->created_at.empty());
  auto bob = users->Create({"bob", "bob@example.com", "$2b$04$other"});
  ASSERT_TRUE(bob);
  EXPECT_NE(bob->id, alice->id);

  auto again = users->Create({"alice", "x@example.com", "h"});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);

  auto by_name = users->FindByUsername("alice");
  ASSERT_TRUE(by_name && *by_name);
  EXPECT_EQ((*by_name)->id, alice->id);
  EXPECT_EQ((*by_name)->password_hash, "$2b$04$hash");
  auto by_id = users->FindById(bob->id);
  ASSERT_TRUE(by_id && *by_id);
  EXPECT_EQ((*by_id)->username, "bob");
  EXPECT_EQ((*by_id)->email, "bob@example.com");
  EXPECT_FALSE(*users->FindById(999999));
  EXPECT_FALSE(*users->FindByUsername("nobody"));
}

TEST_P(RepositoryTest, ParametersAreBoundNotSpliced) {
  auto users = Users();
  std::string evil = "x'); DROP TABLE users; --";
  ASSERT_TRUE(users->Create({evil, "e@example.com", "h"}));
  auto found = users->FindByUsername(evil);
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->username, evil);
  EXPECT_FALSE(*users->FindByUsername("' OR '1'='1"));
  EXPECT_TRUE(users->Create({"still-here", "s@example.com", "h"})) << "the table survived";
}

TEST_P(RepositoryTest, TwoRepositoriesShareOneDatabase) {
  // Two instances of a service: what one writes, the other reads.
  auto first = Users();
  auto second = Users();
  auto created = first->Create({"shared", "s@example.com", "h"});
  ASSERT_TRUE(created);
  auto seen = second->FindByUsername("shared");
  ASSERT_TRUE(seen && *seen);
  EXPECT_EQ((*seen)->id, created->id);
  EXPECT_EQ(second->Create({"shared", "t@example.com", "h"}).error().code,
            ErrorCode::kAlreadyExists);
}

TEST_P(RepositoryTest, ConcurrentWritersFromManyThreads) {
  auto first = Orders();
  auto second = Orders();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto& repo = t % 2 ? *first : *second;
      for (int i = 0; i < 25; ++i) {
        if (!repo.Create({t + 1, "p", 1, 100, 100})) failures.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  for (int user = 1; user <= 4; ++user) EXPECT_EQ(first->ListByUser(user, 1000)->size(), 25u);
}

TEST_P(RepositoryTest, OrdersCreateListAndFind) {
  auto orders = Orders();
  auto a = orders->Create({1, "Widget", 3, 1999, 5997});
  ASSERT_TRUE(a) << a.error().ToString();
  EXPECT_GT(a->id, 0);
  EXPECT_EQ(a->status, "created");
  auto b = orders->Create({1, "Gadget ✓", 1, 50, 50});
  auto c = orders->Create({2, "Other", 1, 1, 1});
  ASSERT_TRUE(b && c);

  auto mine = orders->ListByUser(1, 100);
  ASSERT_TRUE(mine);
  ASSERT_EQ(mine->size(), 2u);
  EXPECT_EQ((*mine)[0].id, b->id) << "newest first";
  EXPECT_EQ((*mine)[0].product, "Gadget ✓");
  EXPECT_EQ((*mine)[1].total_cents, 5997);
  EXPECT_EQ(orders->ListByUser(1, 1)->size(), 1u);
  EXPECT_TRUE(orders->ListByUser(3, 100)->empty());

  auto found = orders->FindById(c->id);
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->user_id, 2);
  EXPECT_EQ((*found)->price_cents, 1);
  EXPECT_EQ((*found)->quantity, 1);
  EXPECT_FALSE(*orders->FindById(424242));
}

TEST_P(RepositoryTest, BigAmountsRoundTrip) {
  auto orders = Orders();
  auto big = orders->Create({1, "Yacht", 10000, 100'000'000, 1'000'000'000'000});
  ASSERT_TRUE(big);
  EXPECT_EQ((*orders->FindById(big->id))->total_cents, 1'000'000'000'000);
}

INSTANTIATE_TEST_SUITE_P(Backends, RepositoryTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         [](const auto& info) {
                           return info.param == Backend::kSqlite ? "SQLite" : "PostgreSQL";
                         });

TEST(RepositoryOpenTest, UnreachableDatabasesAreErrorsNotCrashes) {
  auto pg = user::OpenUserRepository(
      *service::ParseDatabaseUrl(
          "postgresql://disco@127.0.0.1:" + std::to_string(testing::FreePort()) + "/x"),
      {});
  ASSERT_FALSE(pg);
  EXPECT_EQ(pg.error().code, ErrorCode::kUnavailable);
  auto sqlite =
      order::OpenOrderRepository(*service::ParseDatabaseUrl("/nonexistent-dir/x/y.db"), {});
  ASSERT_FALSE(sqlite);
  EXPECT_EQ(sqlite.error().code, ErrorCode::kUnavailable);
  EXPECT_FALSE(service::ParseDatabaseUrl("mysql://x"));
  EXPECT_EQ(service::ParseDatabaseUrl("postgresql://u:secret@h/db")->Redacted(),
            "postgresql://u:***@h/db");
}

}  // namespace
}  // namespace disco
