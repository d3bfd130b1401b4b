#include "disco/http/router.h"

#include <algorithm>

namespace disco::http {

struct Router::Route {
  std::string method;
  std::string pattern;
  std::vector<std::string> segments;  // "{id}" for captures
  Handler handler;
  std::size_t index = 0;
};

namespace {

// Splits "/a/b/" into {"a","b",""}; "/" into {""}.
template <class Out>
void Split(std::string_view path, Out& out) {
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  while (true) {
    auto slash = path.find('/');
    out.emplace_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
}

bool IsCapture(std::string_view segment) {
  return segment.size() >= 2 && segment.front() == '{' && segment.back() == '}';
}

// Lower is more specific: literal segments before captures, earlier first.
int Specificity(const std::vector<std::string>& segments) {
  int score = 0;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    if (IsCapture(segments[i])) score += 1 << (16 - std::min<std::size_t>(i, 15));
  }
  return score;
}

}  // namespace

Router::Router() = default;
Router::~Router() = default;
Router::Router(Router&&) noexcept = default;
Router& Router::operator=(Router&&) noexcept = default;

Router& Router::Add(std::string_view method, std::string_view pattern, Handler handler) {
  for (auto& route : routes_) {
    if (route->method == method && route->pattern == pattern) {
      route->handler = std::move(handler);
      return *this;
    }
  }
  auto route = std::make_unique<Route>();
  route->method = std::string(method);
  route->pattern = std::string(pattern);
  Split(route->pattern, route->segments);
  route->handler = std::move(handler);
  route->index = routes_.size();
  routes_.push_back(std::move(route));
  std::stable_sort(routes_.begin(), routes_.end(), [](const auto& a, const auto& b) {
    return Specificity(a->segments) < Specificity(b->segments);
  });
  return *this;
}

bool Router::Has(std::string_view method, std::string_view pattern) const {
  return std::any_of(routes_.begin(), routes_.end(),
                     [&](const auto& r) { return r->method == method && r->pattern == pattern; });
}

std::size_t Router::size() const { return routes_.size(); }

RouteMatch Router::Match(std::string_view method, std::string_view path,
                         std::vector<std::pair<std::string_view, std::string_view>>& params) const {
  RouteMatch match;
  // Paths of real requests have a handful of segments; avoid the heap for them.
  std::string_view inline_segments[12];
  std::vector<std::string_view> heap_segments;
  std::size_t count = 0;
  {
    std::string_view rest = path;
    if (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
    while (true) {
      auto slash = rest.find('/');
      auto segment = rest.substr(0, slash);
      if (count < std::size(inline_segments) && heap_segments.empty()) {
        inline_segments[count] = segment;
      } else {
        if (heap_segments.empty()) heap_segments.assign(inline_segments, inline_segments + count);
        heap_segments.push_back(segment);
      }
      ++count;
      if (slash == std::string_view::npos) break;
      rest.remove_prefix(slash + 1);
    }
  }
  const std::string_view* segments = heap_segments.empty() ? inline_segments : heap_segments.data();

  auto matches = [&](const Route& route) {
    if (route.segments.size() != count) return false;
    for (std::size_t i = 0; i < count; ++i) {
      const auto& want = route.segments[i];
      if (IsCapture(want)) {
        if (segments[i].empty()) return false;
      } else if (want != segments[i]) {
        return false;
      }
    }
    return true;
  };

  std::vector<std::string_view> allowed;
  for (const auto& route : routes_) {
    if (!matches(*route)) continue;
    if (route->method == method) {
      match.kind = RouteMatch::Kind::kFound;
      match.handler = &route->handler;
      match.pattern = route->pattern;
      match.index = route->index;
      for (std::size_t i = 0; i < count; ++i) {
        const auto& want = route->segments[i];
        if (IsCapture(want)) {
          params.emplace_back(std::string_view(want).substr(1, want.size() - 2), segments[i]);
        }
      }
      return match;
    }
    if (std::find(allowed.begin(), allowed.end(), route->method) == allowed.end()) {
      allowed.push_back(route->method);
    }
  }
  if (!allowed.empty()) {
    std::sort(allowed.begin(), allowed.end());
    match.kind = RouteMatch::Kind::kMethodNotAllowed;
    for (auto m : allowed) {
      if (!match.allow.empty()) match.allow += ", ";
      match.allow += m;
    }
  }
  return match;
}

}  // namespace disco::http
