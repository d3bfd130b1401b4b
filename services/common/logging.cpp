#include "logging.h"

#include <fcntl.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>

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

// The service and instance fields, as JSON (SetLogIdentity).
std::mutex identity_mutex;
std::string identity = "\"service\":null,\"instance\":null";

thread_local const http::Request* current_request = nullptr;

// %N: "service":...,"instance":...
class IdentityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::lock_guard lock(identity_mutex);  // app lines are few; the access log does not come here
    dest.append(identity.data(), identity.data() + identity.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<IdentityFlag>();
  }
};

// %Q: "request_id":...,"trace_id":... of the request being logged about, or nulls.
class RequestFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string fields;
    if (const http::Request* request = current_request) {
      fields = "\"request_id\":" + http::JsonQuote(request->request_id) + ",\"trace_id\":";
      fields += request->TraceId().empty() ? std::string("null") : http::JsonQuote(request->TraceId());
    } else {
      fields = "\"request_id\":null,\"trace_id\":null";
    }
    dest.append(fields.data(), fields.data() + fields.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<RequestFlag>();
  }
};

// Standard output, written through a buffer of its own and flushed on
// request (flush_every), through a duplicate of descriptor 1: the same open
// file as stdout and stderr share under `> file 2>&1`, hence the same
// offset. Opening /dev/stdout anew gave a second offset, and stderr's lines
// overwrote access-log lines in such a file.
class BufferedStdoutSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // nullptr when descriptor 1 cannot be duplicated.
  static std::shared_ptr<BufferedStdoutSink> Make() {
    int fd = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    FILE* file = ::fdopen(fd, "w");
    if (!file) {
      ::close(fd);
      return nullptr;
    }
    std::setvbuf(file, nullptr, _IOFBF, 64 * 1024);
    return std::shared_ptr<BufferedStdoutSink>(new BufferedStdoutSink(file));
  }
  ~BufferedStdoutSink() override { std::fclose(file_); }

 private:
  explicit BufferedStdoutSink(FILE* file) : file_(file) {}
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    std::fwrite(line.data(), 1, line.size(), file_);
  }
  void flush_() override { std::fflush(file_); }

  FILE* file_;
};

}  // namespace

void SetupLogging(std::string_view level) {
  spdlog::drop("disco");
  spdlog::drop("access");
  auto app = spdlog::stderr_logger_mt("disco");
  auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  formatter->add_flag<JsonMessageFlag>('j')
      .add_flag<IdentityFlag>('N')
      .add_flag<RequestFlag>('Q')
      .set_pattern(
          "{\"ts\":\"%Y-%m-%dT%H:%M:%S.%eZ\",\"level\":\"%l\",%N,\"logger\":\"%n\",%Q,"
          "\"msg\":\"%j\"}");
  app->set_formatter(std::move(formatter));
  app->set_level(spdlog::level::from_str(std::string(level)));
  app->flush_on(spdlog::level::info);
  // The access log is buffered and flushed every second (and at exit): the
  // stdout sink's fflush per line was a write() per request, the largest
  // single cost of a cheap request. A kill -9 may lose the last second of it.
  std::shared_ptr<spdlog::logger> access;
  if (auto sink = BufferedStdoutSink::Make()) {
    access = std::make_shared<spdlog::logger>("access", std::move(sink));
    spdlog::register_logger(access);
  } else {
    access = spdlog::stdout_logger_mt("access");  // descriptor 1 closed (unusual)
  }
  access->set_pattern("{\"ts\":\"%Y-%m-%dT%H:%M:%S.%eZ\",%v}", spdlog::pattern_time_type::utc);
  access->set_level(spdlog::level::info);
  access->flush_on(spdlog::level::warn);
  spdlog::flush_every(std::chrono::seconds(1));
}

void SetLogIdentity(std::string_view service, std::string_view instance) {
  std::string fields = "\"service\":" + http::JsonQuote(service) + ",\"instance\":" +
                       (instance.empty() ? std::string("null") : http::JsonQuote(instance));
  std::lock_guard lock(identity_mutex);
  identity = std::move(fields);
}

namespace detail {
RequestLogScope::RequestLogScope(const http::Request& request) : previous_(current_request) {
  current_request = &request;
}
RequestLogScope::~RequestLogScope() { current_request = previous_; }
}  // namespace detail

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
