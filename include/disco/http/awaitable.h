// disco::http::Awaitable<T>: the coroutine type of the HTTP layer (an Asio
// awaitable), without pulling all of Asio and Beast into every handler file.
//
// Handlers and client calls are C++20 coroutines that run on the server's I/O
// threads. Include this header (not boost/asio/awaitable.hpp directly): Boost
// 1.74's awaitable.hpp needs <utility> first.
#pragma once

// clang-format off
#include <utility>  // first: see above
#include <boost/asio/awaitable.hpp>
// clang-format on

namespace disco::http {

template <class T>
using Awaitable = boost::asio::awaitable<T>;

}  // namespace disco::http
