// The repositories of user-service and order-service, one set of cases run
// against every implementation: SQLite (a temp file), PostgreSQL and
// MariaDB (real servers started for the test).
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>

#include "common/database.h"
#include "fixture/mariadb_server.h"
#include "fixture/postgres_server.h"
#include "fixture/util.h"
#include "order/order_repository.h"
#include "user/user_repository.h"

namespace disco {
namespace {

enum class Backend { kSqlite, kPostgres, kMysql };

class RepositoryTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kPostgres) {
      postgres_ = std::make_unique<testing::PostgresServer>();
      url_ = *service::ParseDatabaseUrl(postgres_->CreateDatabase("repo_test"));
    } else if (GetParam() == Backend::kMysql) {
      mariadb_ = std::make_unique<testing::MariadbServer>();
      url_ = *service::ParseDatabaseUrl(mariadb_->CreateDatabase("repo_test"));
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
  std::unique_ptr<testing::MariadbServer> mariadb_;
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

// Names compare byte for byte in every backend (MariaDB's default
// collations would fold case and ignore trailing spaces), and values longer
// than a first fetch buffer come back whole.
TEST_P(RepositoryTest, ValuesCompareExactlyAndLongOnesRoundTrip) {
  auto users = Users();
  ASSERT_TRUE(users->Create({"alice", "a@example.com", "h"}));
  EXPECT_TRUE(users->Create({"Alice", "b@example.com", "h"})) << "case matters";
  EXPECT_TRUE(users->Create({"alice ", "c@example.com", "h"})) << "a trailing space matters";
  EXPECT_EQ((*users->FindByUsername("ALICE")), std::nullopt);
  EXPECT_EQ((*users->FindByUsername("Alice"))->email, "b@example.com");
  const std::string hash(1000, 'h');
  auto long_one = users->Create({"long", std::string(240, 'e') + "@example.com", hash});
  ASSERT_TRUE(long_one) << long_one.error().ToString();
  auto found = users->FindById(long_one->id);
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->password_hash, hash);
  EXPECT_EQ((*found)->email.size(), 252u);

  auto orders = Orders();
  std::string product;
  for (int i = 0; i < 200; ++i) product += "✓";
  auto order = orders->Create({1, product, 1, 1, 1, std::string(255, 'k')});
  ASSERT_TRUE(order) << order.error().ToString();
  auto listed = orders->ListByUser(1, 10);
  ASSERT_TRUE(listed && listed->size() == 1u);
  EXPECT_EQ((*listed)[0].product, product);
  EXPECT_EQ((*listed)[0].idempotency_key, std::string(255, 'k'));
  EXPECT_FALSE(*orders->FindByIdempotencyKey(1, std::string(255, 'K')));
}

// Instances started together on an empty database: each creates the schema
// (idempotent, serialised by the backend's lock) and none fails.
TEST_P(RepositoryTest, InstancesStartingTogetherAllCreateTheSchema) {
  std::vector<std::thread> threads;
  std::atomic<int> opened{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      bool ok = t % 2 ? static_cast<bool>(user::OpenUserRepository(url_, {}))
                      : static_cast<bool>(order::OpenOrderRepository(url_, {}));
      if (ok) opened.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(opened.load(), 6);
  EXPECT_TRUE(Users()->Create({"after", "a@example.com", "h"}));
  EXPECT_TRUE(Orders()->Create({1, "p", 1, 1, 1}));
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

// A login replaces an outdated password hash only if it is still the one it
// verified (another instance may have replaced it meanwhile).
TEST_P(RepositoryTest, UsersPasswordHashIsReplacedOnlyIfUnchanged) {
  auto users = Users();
  auto other = Users();
  const std::string legacy = "$2b$04$LegacyUnsaltedSha256PeLRshqkstmCiLYs5eH6TniR/YZg4rRli";
  const std::string fresh =
      "$disco-hmac$2b$04$abcdefghijklmnopqrstuu0123456789abcdefghijklmnopqrstu";
  auto alice = users->Create({"alice", "alice@example.com", legacy});
  auto bob = users->Create({"bob", "bob@example.com", legacy});
  ASSERT_TRUE(alice && bob);

  auto stale = users->UpdatePasswordHash(alice->id, "$2b$04$not-the-stored-hash", fresh);
  ASSERT_TRUE(stale) << stale.error().ToString();
  EXPECT_FALSE(*stale);
  EXPECT_EQ((*users->FindById(alice->id))->password_hash, legacy);

  auto updated = users->UpdatePasswordHash(alice->id, legacy, fresh);
  ASSERT_TRUE(updated) << updated.error().ToString();
  EXPECT_TRUE(*updated);
  EXPECT_EQ((*other->FindByUsername("alice"))->password_hash, fresh) << "seen by another instance";
  EXPECT_EQ((*other->FindById(bob->id))->password_hash, legacy) << "only alice's row";
  EXPECT_FALSE(*users->UpdatePasswordHash(alice->id, legacy, "$2b$04$again")) << "already replaced";
  EXPECT_FALSE(*users->UpdatePasswordHash(999999, legacy, fresh)) << "no such user";

  // Bound, not spliced.
  std::string evil = "x' WHERE 1=1; UPDATE users SET password_hash = 'owned'; --";
  EXPECT_FALSE(*users->UpdatePasswordHash(bob->id, evil, evil));
  EXPECT_TRUE(*users->UpdatePasswordHash(bob->id, legacy, evil));
  EXPECT_EQ((*users->FindById(bob->id))->password_hash, evil);
  EXPECT_EQ((*users->FindById(alice->id))->password_hash, fresh);
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

TEST_P(RepositoryTest, OrdersCreatedManyShareOneCommit) {
  auto orders = Orders();
  auto other = Orders();  // a second repository on the same database
  order::NewOrder a{1, "Widget", 3, 1999, 5997}, b{2, "Gadget ✓", 1, 50, 50},
      c{1, "Bolt", 2, 5, 10};
  const order::NewOrder* batch[] = {&a, &b, &c};
  auto created = orders->CreateMany(batch);
  ASSERT_EQ(created.size(), 3u);
  for (const auto& order : created) ASSERT_TRUE(order) << order.error().ToString();
  EXPECT_LT(created[0]->id, created[1]->id) << "in order of submission";
  EXPECT_LT(created[1]->id, created[2]->id);
  EXPECT_EQ(created[1]->product, "Gadget ✓");
  EXPECT_EQ(created[2]->status, "created");
  // Committed: visible through another connection.
  auto found = other->FindById(created[1]->id);
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->user_id, 2);
  EXPECT_EQ((*found)->total_cents, 50);
  EXPECT_EQ(other->ListByUser(1, 100)->size(), 2u);
  // A batch of one is a plain Create.
  const order::NewOrder* one[] = {&c};
  auto single = orders->CreateMany(one);
  ASSERT_EQ(single.size(), 1u);
  ASSERT_TRUE(single[0]);
  EXPECT_GT(single[0]->id, created[2]->id);
}

// Group commit and idempotency keys: a taken key fails its own order only
// (the others of the batch are committed), and two orders of one batch
// with the same key make one order.
TEST_P(RepositoryTest, OrdersCreatedManyKeepIdempotencyKeys) {
  auto orders = Orders();
  auto other = Orders();
  ASSERT_TRUE(orders->Create({7, "Widget", 2, 1999, 3998, "taken"}));
  order::NewOrder reuse{7, "Widget", 2, 1999, 3998, "taken"}, fresh{7, "Bolt", 1, 5, 5, "fresh"},
      keyless{7, "Nut", 1, 1, 1}, twice{8, "Gear", 1, 7, 7, "twice"},
      twice_again{8, "Gear", 1, 7, 7, "twice"};
  const order::NewOrder* batch[] = {&reuse, &fresh, &keyless, &twice, &twice_again};
  auto created = orders->CreateMany(batch);
  ASSERT_EQ(created.size(), 5u);
  ASSERT_FALSE(created[0]);
  EXPECT_EQ(created[0].error().code, ErrorCode::kAlreadyExists);
  ASSERT_TRUE(created[1]) << created[1].error().ToString();
  EXPECT_EQ(created[1]->idempotency_key, "fresh");
  ASSERT_TRUE(created[2]) << created[2].error().ToString();
  ASSERT_TRUE(created[3]) << created[3].error().ToString();
  ASSERT_FALSE(created[4]) << "the same key twice in one batch makes one order";
  EXPECT_EQ(created[4].error().code, ErrorCode::kAlreadyExists);
  // Committed, as seen from another connection.
  EXPECT_EQ(other->ListByUser(7, 100)->size(), 3u);
  EXPECT_EQ(other->ListByUser(8, 100)->size(), 1u);
  auto found = other->FindByIdempotencyKey(8, "twice");
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->id, created[3]->id);
}

TEST_P(RepositoryTest, BigAmountsRoundTrip) {
  auto orders = Orders();
  auto big = orders->Create({1, "Yacht", 10000, 100'000'000, 1'000'000'000'000});
  ASSERT_TRUE(big);
  EXPECT_EQ((*orders->FindById(big->id))->total_cents, 1'000'000'000'000);
}

TEST_P(RepositoryTest, IdempotencyKeysAreUniquePerUser) {
  auto first = Orders();
  auto second = Orders();  // another instance on the same database
  order::NewOrder order{7, "Widget", 2, 1999, 3998, "key-1"};
  auto made = first->Create(order);
  ASSERT_TRUE(made) << made.error().ToString();
  EXPECT_EQ(made->idempotency_key, "key-1");

  auto again = second->Create(order);
  ASSERT_FALSE(again) << "the same key must not make a second order";
  EXPECT_EQ(again.error().code, ErrorCode::kAlreadyExists);
  auto different = second->Create({7, "Gadget", 1, 5, 5, "key-1"});
  ASSERT_FALSE(different);
  EXPECT_EQ(different.error().code, ErrorCode::kAlreadyExists);
  EXPECT_EQ(first->ListByUser(7, 100)->size(), 1u);

  auto found = second->FindByIdempotencyKey(7, "key-1");
  ASSERT_TRUE(found && *found);
  EXPECT_EQ((*found)->id, made->id);
  EXPECT_EQ((*found)->product, "Widget");
  EXPECT_EQ((*found)->created_at, made->created_at);
  EXPECT_FALSE(*second->FindByIdempotencyKey(7, "key-2"));
  EXPECT_FALSE(*second->FindByIdempotencyKey(8, "key-1")) << "keys belong to their user";

  // Another user may use the same key; orders without a key never collide.
  EXPECT_TRUE(first->Create({8, "Widget", 2, 1999, 3998, "key-1"}));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(first->Create({7, "Keyless", 1, 1, 1}));
  EXPECT_EQ((*first->FindById(made->id))->idempotency_key, "key-1");
  EXPECT_EQ(first->ListByUser(7, 100)->front().idempotency_key, "");
  // Bound, not spliced.
  std::string evil = "k'); DELETE FROM orders; --";
  EXPECT_TRUE(first->Create({9, "p", 1, 1, 1, evil}));
  EXPECT_TRUE(*first->FindByIdempotencyKey(9, evil));
  EXPECT_EQ(first->ListByUser(7, 100)->size(), 4u);
}

TEST_P(RepositoryTest, ConcurrentCreatesWithOneKeyMakeOneOrder) {
  auto first = Orders();
  auto second = Orders();
  std::atomic<int> created{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto& repo = t % 2 ? *first : *second;
      for (int i = 0; i < 10; ++i) {
        auto r = repo.Create({3, "p", 1, 100, 100, "race-" + std::to_string(i)});
        if (r)
          created.fetch_add(1);
        else if (r.error().code == ErrorCode::kAlreadyExists)
          refused.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(created.load(), 10);
  EXPECT_EQ(refused.load(), 30);
  EXPECT_EQ(first->ListByUser(3, 100)->size(), 10u);
}

INSTANTIATE_TEST_SUITE_P(Backends, RepositoryTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres, Backend::kMysql),
                         [](const auto& info) -> std::string {
                           switch (info.param) {
                             case Backend::kPostgres:
                               return "PostgreSQL";
                             case Backend::kMysql:
                               return "MariaDB";
                             case Backend::kSqlite:
                               break;
                           }
                           return "SQLite";
                         });

// A database made before idempotency keys gets the column and the unique
// index when an order-service of this release opens it; its orders stay.
TEST(RepositoryOpenTest, SqliteOrdersTableFromBeforeIdempotencyKeysIsMigrated) {
  testing::TempDir dir{"disco-migrate"};
  const std::string path = dir.Sub("old.db");
  {
    auto old = service::SqliteConnection::Open(
        path, service::SqliteSync::kNormal,
        "CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL,"
        " product TEXT NOT NULL, quantity INTEGER NOT NULL, price_cents INTEGER NOT NULL,"
        " total_cents INTEGER NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL);"
        "INSERT INTO orders (user_id, product, quantity, price_cents, total_cents, status,"
        " created_at) VALUES (5, 'Old', 1, 100, 100, 'created', '2026-01-01T00:00:00.000Z')");
    ASSERT_TRUE(old) << old.error().ToString();
  }
  auto url = *service::ParseDatabaseUrl(path);
  auto first = order::OpenOrderRepository(url, {});
  auto second = order::OpenOrderRepository(url, {});  // a second instance: nothing left to do
  ASSERT_TRUE(first) << first.error().ToString();
  ASSERT_TRUE(second) << second.error().ToString();
  auto old_orders = (*first)->ListByUser(5, 10);
  ASSERT_TRUE(old_orders);
  ASSERT_EQ(old_orders->size(), 1u);
  EXPECT_EQ((*old_orders)[0].product, "Old");
  EXPECT_EQ((*old_orders)[0].idempotency_key, "");
  EXPECT_TRUE((*first)->Create({5, "New", 1, 1, 1, "k"}));
  EXPECT_EQ((*second)->Create({5, "New", 1, 1, 1, "k"}).error().code, ErrorCode::kAlreadyExists);
}

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
  auto mysql = order::OpenOrderRepository(
      *service::ParseDatabaseUrl("mysql://disco:pw@127.0.0.1:" +
                                 std::to_string(testing::FreePort()) + "/x?connect_timeout=2"),
      {});
  ASSERT_FALSE(mysql);
  EXPECT_EQ(mysql.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(mysql.error().message.find("cannot connect to MySQL at 127.0.0.1:"), std::string::npos)
      << mysql.error().message;
  EXPECT_EQ(mysql.error().message.find("pw"), std::string::npos) << "no password in errors";
  EXPECT_FALSE(service::ParseDatabaseUrl("mongodb://x"));
  EXPECT_EQ(service::ParseDatabaseUrl("postgresql://u:secret@h/db")->Redacted(),
            "postgresql://u:***@h/db");
  EXPECT_EQ(service::ParseDatabaseUrl("mysql://u:se@cret@h:3306/db")->Redacted(),
            "mysql://u:***@h:3306/db");
}

}  // namespace
}  // namespace disco
