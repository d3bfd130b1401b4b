// A service on libdisco's HTTP layer, and a client that finds it through
// discovery: two instances of "hello" serve GET /hello/{name} on free ports
// and register themselves; the discovery-aware client then calls
// http://hello/hello/world four times and prints which instance answered
// (the X-Served-By header every disco server sends).
//   http_service_example [REGISTRY_URL]     (default memory://example)
// clang-format off
#include <utility>  // first: Boost 1.74's Asio uses std::exchange without including it
// clang-format on
#include <disco/http/client.h>
#include <disco/http/router.h>
#include <disco/http/server.h>
#include <disco/registry.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <iostream>
#include <memory>
#include <vector>

using disco::http::Awaitable;

int main(int argc, char** argv) {
  std::string url = argc > 1 ? argv[1] : "memory://example";
  auto registry = disco::MakeRegistry(url);
  if (!registry) {
    std::cerr << "registry: " << registry.error().ToString() << "\n";
    return 1;
  }

  std::vector<std::unique_ptr<disco::http::Server>> servers;
  std::vector<std::unique_ptr<disco::Registration>> registrations;
  for (const char* id : {"hello-1", "hello-2"}) {
    disco::http::Router router;
    router.Add("GET", "/hello/{name}",
               [](disco::http::Request& request) -> Awaitable<disco::http::Response> {
                 co_return disco::http::Response::Json(
                     200, "{\"hello\":" + disco::http::JsonQuote(request.Param("name")) + "}");
               });
    auto server = std::make_unique<disco::http::Server>(
        std::move(router), disco::http::ServerOptions{.host = "127.0.0.1",
                                                      .port = 0,  // any free port
                                                      .threads = 1,
                                                      .service = "hello",
                                                      .instance_id = id,
                                                      .access_log = false});
    if (auto started = server->Start(); !started) {
      std::cerr << "server: " << started.error().ToString() << "\n";
      return 1;
    }
    disco::ServiceInstance instance{
        .service = "hello", .id = id, .host = "127.0.0.1", .port = server->port()};
    auto registration = (*registry)->Register(instance);  // kept alive in the background
    if (!registration) {
      std::cerr << "register: " << registration.error().ToString() << "\n";
      return 1;
    }
    registrations.push_back(std::move(*registration));
    servers.push_back(std::move(server));
  }

  // Client calls are coroutines; run them on an io_context of our own.
  disco::http::Client client(**registry);
  boost::asio::io_context io;
  int failures = 0;
  boost::asio::co_spawn(
      io,
      [&]() -> Awaitable<void> {
        for (int i = 0; i < 4; ++i) {
          disco::http::ClientRequest request;
          request.url = "http://hello/hello/world";  // "hello" is resolved through the registry
          auto response = co_await client.Send(std::move(request));
          if (!response) {
            std::cout << "error: " << response.error().ToString() << "\n";
            ++failures;
            continue;
          }
          std::cout << response->Header("X-Served-By") << " " << response->status << " "
                    << response->body << "\n";
        }
      },
      boost::asio::detached);
  io.run();

  registrations.clear();  // deregisters
  for (auto& server : servers) server->Drain(std::chrono::seconds(1));
  return failures == 0 ? 0 : 1;
}
