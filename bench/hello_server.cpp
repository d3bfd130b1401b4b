// hello_server: the ceiling for the services benchmark. The least a Beast
// coroutine server can do per request — read it, answer "Hello, world!" with
// keep-alive — with the same threading as disco's http::Server (one
// io_context per thread, one acceptor handing sockets round-robin).
//
//   hello_server --port 8081 --threads 1
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "disco/detail/asio.h"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

asio::awaitable<void> Session(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  boost::system::error_code ec;
  for (;;) {
    http::request<http::string_body> request;
    co_await http::async_read(stream, buffer, request,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    http::response<http::string_body> response{http::status::ok, request.version()};
    response.set(http::field::content_type, "text/plain");
    response.body() = "Hello, world!";
    response.keep_alive(request.keep_alive());
    response.prepare_payload();
    co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !request.keep_alive()) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
}

asio::awaitable<void> Accept(tcp::acceptor& acceptor,
                             std::vector<std::unique_ptr<asio::io_context>>& contexts) {
  std::size_t next = 0;
  for (;;) {
    auto& target = *contexts[next++ % contexts.size()];
    boost::system::error_code ec;
    tcp::socket socket =
        co_await acceptor.async_accept(target, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) continue;
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(target, Session(std::move(socket)), asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  unsigned short port = 8081;
  std::size_t threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--port")
      port = static_cast<unsigned short>(std::atoi(argv[i + 1]));
    else if (flag == "--threads")
      threads = static_cast<std::size_t>(std::atoi(argv[i + 1]));
  }
  if (argc > 1 && std::string(argv[1]) == "--help") {
    std::cout << "hello_server --port P --threads N: the hello-world ceiling for "
                 "bench/run_services_bench.sh\n";
    return 0;
  }
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  for (std::size_t i = 0; i < std::max<std::size_t>(threads, 1); ++i) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
  }
  tcp::acceptor acceptor(*contexts[0], tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  asio::co_spawn(*contexts[0], Accept(acceptor, contexts), asio::detached);
  std::vector<std::thread> workers;
  for (std::size_t i = 1; i < contexts.size(); ++i)
    workers.emplace_back([&, i] { contexts[i]->run(); });
  auto guard = asio::make_work_guard(*contexts[0]);
  contexts[0]->run();
  for (auto& w : workers) w.join();
}
