// The one way disco code includes Boost.Asio and Boost.Beast.
//
// Boost 1.74's boost/asio/awaitable.hpp uses std::exchange without including
// <utility>; GCC 12 then fails. Including <utility> first fixes it once.
// Asio and Beast are compiled separately (BOOST_ASIO_SEPARATE_COMPILATION,
// BOOST_BEAST_SEPARATE_COMPILATION, set on the disco target): their
// implementation lives in one translation unit of libdisco
// (src/util/asio_impl.cpp) instead of being re-instantiated in every file.
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
