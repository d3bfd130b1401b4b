#include "postgres.h"

namespace disco::service {

Result<std::unique_ptr<pqxx::connection>> OpenPostgres(const std::string& url,
                                                       std::string_view schema) {
  try {
    auto conn = std::make_unique<pqxx::connection>(url);
    if (schema.empty()) return conn;
    pqxx::work txn(*conn);
    // Any constant: serialises schema creation across every disco service.
    txn.exec("SELECT pg_advisory_xact_lock(727274)");
    txn.exec(std::string(schema));
    txn.commit();
    return conn;
  } catch (const std::exception& e) {
    // libpq messages name host and port but never the password.
    return Fail(ErrorCode::kUnavailable, std::string("PostgreSQL: ") + e.what());
  }
}

PostgresPool::PostgresPool(std::string url, std::string_view schema, Prepare prepare,
                           std::size_t connections)
    : pool_(
          [this, url = std::move(url), schema = std::string(schema),
           prepare]() -> Result<std::unique_ptr<pqxx::connection>> {
            // The schema's DDL (ALTER TABLE locks the table even when there
            // is nothing to do) runs on the first connection only, not on
            // every reconnect under load.
            auto conn = OpenPostgres(url, schema_ready_ ? std::string_view() : schema);
            if (!conn) return conn;
            schema_ready_ = true;
            prepare(**conn);
            return conn;
          },
          connections) {}

Result<void> PostgresPool::Check() {
  auto lease = pool_.Acquire();
  if (!lease) return std::unexpected(lease.error());
  return {};
}

}  // namespace disco::service
