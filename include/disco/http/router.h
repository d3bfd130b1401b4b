// Router: maps a method and a path to a handler.
//
// Patterns are literal segments and {name} captures of one whole segment:
// "/api/users/{id}". A literal segment wins over a capture at the same place.
// A last segment "{name...}" captures the rest of the path, zero or more
// segments ("/api/users/{rest...}" matches "/api/users", "/api/users/" and
// "/api/users/7/orders"; rest is "", "" and "7/orders"); it loses to every
// pattern without one. The method "*" matches any method (a reverse proxy's
// routes), after the routes that name the method.
// A path no pattern matches is 404; a path some pattern matches but not with
// this method is 405 with an Allow header listing the methods that would work.
// Routes are added before the server starts and never change afterwards.
//
// Thread safety: Add() is not thread-safe; Match() is const and may run on
// many threads at once.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "disco/http/awaitable.h"
#include "disco/http/message.h"

namespace disco::http {

using Handler = std::function<Awaitable<Response>(Request&)>;

struct RouteMatch {
  enum class Kind { kFound, kNotFound, kMethodNotAllowed };
  Kind kind = Kind::kNotFound;
  const Handler* handler = nullptr;  // kFound
  std::string_view pattern;          // kFound: the route's pattern (a metrics label)
  std::string allow{};               // kMethodNotAllowed: "GET, POST"
  std::size_t index = 0;             // kFound: the route's index in order of Add()
};

class Router {
 public:
  Router();
  ~Router();
  Router(Router&&) noexcept;
  Router& operator=(Router&&) noexcept;

  // REQUIRES: pattern starts with '/'; method upper case or "*". Adding the same
  // method and pattern twice replaces the handler.
  Router& Add(std::string_view method, std::string_view pattern, Handler handler);
  bool Has(std::string_view method, std::string_view pattern) const;

  // On kFound, appends the captures to `params` (views into `path` and the
  // router's patterns).
  RouteMatch Match(std::string_view method, std::string_view path,
                   std::vector<std::pair<std::string_view, std::string_view>>& params) const;

  std::size_t size() const;

 private:
  struct Route;
  std::vector<std::unique_ptr<Route>> routes_;
};

}  // namespace disco::http
