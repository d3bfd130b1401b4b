#include "logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "disco/http/message.h"

namespace disco::service {
namespace {

// %j: the message as the inside of a JSON string (quotes and controls escaped).
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string quoted = http::JsonQuote(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(quoted.data() + 1, quoted.data() + quoted.size() - 1);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

}  // namespace

void SetupLogging(std::string_view level) {
  spdlog::drop("disco");
  spdlog::drop("access");
  auto app = spdlog::stderr_logger_mt("disco");
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<JsonMessageFlag>('j').set_pattern(
      "{\"ts\":\"%Y-%m-%dT%H:%M:%S.%eZ\",\"level\":\"%l\",\"logger\":\"%n\",\"msg\":\"%j\"}");
  app->set_formatter(std::move(formatter));
  app->set_level(spdlog::level::from_str(std::string(level)));
  app->flush_on(spdlog::level::info);
  // The access log is buffered and flushed every second (and at exit): the
  // stdout sink's fflush per line was a write() per request, the largest
  // single cost of a cheap request. A kill -9 may lose the last second of it.
  std::shared_ptr<spdlog::logger> access;
  try {
    access = spdlog::basic_logger_mt("access", "/dev/stdout");
  } catch (const spdlog::spdlog_ex&) {
    access = spdlog::stdout_logger_mt("access");  // no /dev/stdout (unusual sandbox)
  }
  access->set_pattern("{\"ts\":\"%Y-%m-%dT%H:%M:%S.%eZ\",%v}", spdlog::pattern_time_type::utc);
  access->set_level(spdlog::level::info);
  access->flush_on(spdlog::level::warn);
  spdlog::flush_every(std::chrono::seconds(1));
}

spdlog::logger& Log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto existing = spdlog::get("disco");
    return existing ? existing : spdlog::stderr_logger_mt("disco");
  }();
  return *logger;
}

void FlushLogs() {
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& logger) { logger->flush(); });
}

}  // namespace disco::service
