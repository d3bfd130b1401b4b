// The compiled implementation of Boost.Asio and Boost.Beast for the whole
// program (see include/disco/detail/asio.h).
#include <utility>

#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
