#include "registry/consul/consul_core.h"
#include "registry/registry_tls.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>

#include "util/log.h"

namespace disco::consul {
namespace {

namespace asio = boost::asio;

// "30s", "2m", "45" (seconds) → seconds; 0 on error.
std::chrono::seconds ParseWait(const std::string& text) {
  std::string_view digits = text;
  long multiplier = 1;
  if (digits.ends_with("s")) {
    digits.remove_suffix(1);
  } else if (digits.ends_with("m")) {
    digits.remove_suffix(1);
    multiplier = 60;
  }
  long value = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || ptr != digits.data() + digits.size() || digits.empty())
    return std::chrono::seconds(0);
  return std::chrono::seconds(value * multiplier);
}

// More would only multiply the wait for an answer when all of them are down.
constexpr std::size_t kMaxAgents = 16;

// Datacenter names as Consul accepts them ([A-Za-z0-9_-]).
bool ValidLabel(std::string_view text) {
  if (text.empty() || text.size() > 64) return false;
  return std::all_of(text.begin(), text.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

// "a,b" → {"a", "b"}. A tag goes into a query string, so it is kept to
// printable characters that need no escaping there.
Result<std::vector<std::string>> ParseTags(std::string_view text) {
  std::vector<std::string> tags;
  for (bool more = true; more;) {
    auto comma = text.find(',');
    auto tag = text.substr(0, comma);
    more = comma != std::string_view::npos;
    if (more) text = text.substr(comma + 1);
    bool ok = !tag.empty() && tag.size() <= 128 && std::all_of(tag.begin(), tag.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
             c == ':' || c == '=' || c == '/';
    });
    if (!ok) {
      return Fail(ErrorCode::kInvalidArgument,
                  "consul:// parameter tag='" + std::string(tag) +
                      "': want non-empty tags of letters, digits and -_.:=/ (1-128), "
                      "comma-separated or repeated");
    }
    tags.emplace_back(tag);
  }
  return tags;
}

}  // namespace

Result<Config> ParseConfig(const RegistryUrl& url, const RegistryOptions& options) {
  Config config;
  if (url.endpoints.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "consul:// takes at least one agent address");
  }
  if (url.endpoints.size() > kMaxAgents) {
    return Fail(ErrorCode::kInvalidArgument, "consul:// takes at most " +
                                                 std::to_string(kMaxAgents) + " agent addresses");
  }
  config.agents = url.endpoints;
  config.url = url.Redacted();
  config.request_timeout = options.request_timeout;
  // An unreachable agent must be reported within a few seconds even when the
  // caller allows long requests; a loopback or LAN connect is milliseconds.
  config.connect_timeout = std::min(options.request_timeout, std::chrono::milliseconds(2000));
  for (const auto& [key, value] : url.params) {
    if (key == "token") {
      config.token = value;
    } else if (key == "stale") {
      if (value.empty() || value == "1" || value == "true") {
        config.stale = true;
      } else if (value == "0" || value == "false") {
        config.stale = false;
      } else {
        return Fail(ErrorCode::kInvalidArgument,
                    "consul:// parameter stale='" + value + "': want 1 or 0");
      }
    } else if (key == "wait") {
      config.wait = ParseWait(value);
      if (config.wait < std::chrono::seconds(1) || config.wait > std::chrono::minutes(10)) {
        return Fail(ErrorCode::kInvalidArgument,
                    "consul:// parameter wait='" + value + "': want 1s-10m (e.g. wait=30s)");
      }
    } else if (key == "dc") {
      if (!ValidLabel(value)) {
        return Fail(ErrorCode::kInvalidArgument,
                    "consul:// parameter dc='" + value +
                        "': want a datacenter name of letters, digits, '-' and '_' (1-64)");
      }
      config.dc = value;
    } else if (key == "tag") {
      auto tags = ParseTags(value);
      if (!tags) return std::unexpected(tags.error());
      config.tags = std::move(*tags);
    } else if (!IsRegistryTlsParam(key)) {
      return Fail(ErrorCode::kInvalidArgument,
                  "unknown consul:// parameter '" + key +
                      "' (known: token, stale, wait, dc, tag, tls, ca, cert, key, tls_reload)");
    }
  }
  auto tls = ParseRegistryTls(url);
  if (!tls) return std::unexpected(tls.error());
  config.tls = std::move(tls->config);
  if (config.token.empty()) {
    if (const char* env = std::getenv("DISCO_CONSUL_TOKEN"); env && *env) config.token = env;
  }
  return config;
}

Core::Core(Config config)
    : config_(std::move(config)),
      work_(asio::make_work_guard(io_)),
      client_(io_, config_.agents, config_.token, config_.url, config_.connect_timeout,
              config_.tls),
      delivery_(std::make_shared<asio::io_context>()),
      delivery_work_(asio::make_work_guard(*delivery_)) {
  io_thread_ = std::thread([this] {
    try {
      io_.run();
    } catch (const std::exception& e) {
      // Coroutines report errors as values; reaching here is a bug.
      log::Get().critical("consul backend I/O thread stopped: {}", e.what());
    }
  });
  delivery_thread_ = std::thread([context = delivery_] {
    try {
      context->run();
    } catch (const std::exception& e) {
      log::Get().error("consul watch callback threw; callbacks of this registry stopped: {}",
                       e.what());
    }
  });
  delivery_id_ = delivery_thread_.get_id();
}

Core::~Core() {
  // Handles cancel their own tasks before letting go of the Core; what may
  // still run are one-shot requests that outlived a timed-out Call(). Close
  // the idle connections and let the I/O thread finish what is left: every
  // request has its own timeout, so this is bounded.
  asio::post(io_, [this] { client_.CloseIdle(); });
  work_.reset();
  io_thread_.join();

  delivery_work_.reset();
  if (OnDeliveryThread()) {
    // The last handle was dropped inside a callback: that thread cannot join
    // itself. It ends after the callback returns; the context it holds
    // stays alive until then.
    delivery_thread_.detach();
  } else {
    delivery_thread_.join();
  }
}

void Core::Spawn(asio::awaitable<void> task) {
  asio::co_spawn(io_, std::move(task), [](std::exception_ptr error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      log::Get().error("consul backend task ended by an exception: {}", e.what());
    } catch (...) {
      log::Get().error("consul backend task ended by an unknown exception");
    }
  });
}

void Core::DiscoveryFailed(std::size_t agent) {
  if (agent != discovery_agent_ || agents() < 2) return;
  discovery_agent_ = (agent + 1) % agents();
  log::Get().info("{}: discovery moves to agent {}", config_.url,
                  config_.agents[discovery_agent_].ToString());
}

void Core::Deliver(std::function<void()> fn) { asio::post(*delivery_, std::move(fn)); }

}  // namespace disco::consul
