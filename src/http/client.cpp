#include "disco/http/client.h"

#include "disco/http/channel.h"
#include "disco/http/message.h"
#include "disco/resolver.h"

namespace disco::http {

namespace {

// Views into the request's URL.
struct ParsedUrl {
  std::string_view authority;  // service name or host:port
  std::string_view target;     // path and query as given: may be empty or start with '?'
  bool direct = false;         // authority is host:port
  bool tls = false;            // https://
};

Result<ParsedUrl> ParseUrl(std::string_view url) {
  constexpr std::string_view kHttp = "http://";
  constexpr std::string_view kHttps = "https://";
  ParsedUrl out;
  if (url.starts_with(kHttp)) {
    url.remove_prefix(kHttp.size());
  } else if (url.starts_with(kHttps)) {
    url.remove_prefix(kHttps.size());
    out.tls = true;
  } else {
    return Fail(ErrorCode::kInvalidArgument,
                "URL must start with http:// or https:// (got '" + std::string(url) + "')");
  }
  auto slash = url.find_first_of("/?");
  out.authority = url.substr(0, slash);
  if (slash != std::string_view::npos) out.target = url.substr(slash);
  if (out.authority.empty())
    return Fail(ErrorCode::kInvalidArgument, "URL has no host or service name");
  out.direct = out.authority.find(':') != std::string_view::npos;
  return out;
}

}  // namespace

std::string_view ClientResponse::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (HeaderNameEquals(k, name)) return v;
  }
  return {};
}

struct Client::Impl {
  Impl(Registry& registry, ClientOptions options) : channels(registry, std::move(options)) {}
  ChannelSet channels;
};

Client::Client(Registry& registry, ClientOptions options)
    : impl_(std::make_unique<Impl>(registry, std::move(options))) {}

Client::~Client() = default;

Result<void> Client::Prepare(std::string_view service, std::chrono::milliseconds timeout) {
  auto channel = impl_->channels.Get(service);
  if (!channel) return std::unexpected(channel.error());
  (*channel)->WaitReady(timeout);
  return {};
}

Result<Resolver*> Client::ResolverFor(std::string_view service) {
  auto channel = impl_->channels.Get(service);
  if (!channel) return std::unexpected(channel.error());
  return &(*channel)->resolver();
}

ClientStats Client::stats() const { return impl_->channels.stats(); }

Awaitable<Result<ClientResponse>> Client::Send(ClientRequest request) {
  // Copies out of the URL before the request moves on (the views point into it).
  std::string authority;
  {
    auto url = ParseUrl(request.url);
    if (!url) co_return std::unexpected(url.error());
    request.target.assign(url->target);
    authority.assign(url->authority);
    if (url->direct) {
      const bool tls = url->tls;
      co_return co_await impl_->channels.direct().SendTo(std::move(request), std::move(authority),
                                                         tls);
    }
    // https://service: discovered instances go over TLS by the client's
    // settings (ClientOptions::tls), the scheme cannot ask for less.
    if (url->tls && !impl_->channels.options().tls)
      co_return std::unexpected(Error{ErrorCode::kInvalidArgument,
                                      "https://" + authority +
                                          ": TLS to a discovered service needs the client's TLS "
                                          "settings (ClientOptions::tls)"});
  }
  auto channel = impl_->channels.Get(authority);
  if (!channel) co_return std::unexpected(channel.error());
  co_return co_await (*channel)->Send(std::move(request));
}

}  // namespace disco::http
