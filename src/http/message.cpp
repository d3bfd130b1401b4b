#include "disco/http/message.h"

#include <cstdint>
#include <cstdio>
#include <cstring>

#include "http/connection.h"
#include "http/trace_context.h"
#include "util/utf8.h"

namespace disco::http {
namespace {

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IEqualsBytes(const char* a, const char* b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

std::uint64_t Load8(const char* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Eight bytes at a time: header names mostly compare equal byte for byte
// (both sides write the usual spelling) or differ in a bit other than the
// case bit (0x20), and both are one comparison per word. Only a word whose
// bytes differ in the case bit alone goes byte by byte. A byte loop cost
// about 12 instructions a character, and this runs for every header name a
// proxy forwards or filters.
bool IEquals(std::string_view a, std::string_view b) {
  const std::size_t n = a.size();
  if (n != b.size()) return false;
  if (n < 8) return IEqualsBytes(a.data(), b.data(), n);
  constexpr std::uint64_t kCaseBits = 0x2020202020202020ULL;
  auto word_equal = [&](std::size_t i) {
    const std::uint64_t x = Load8(a.data() + i);
    const std::uint64_t y = Load8(b.data() + i);
    if (x == y) return true;
    if (((x ^ y) & ~kCaseBits) != 0) return false;
    return IEqualsBytes(a.data() + i, b.data() + i, 8);
  };
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    if (!word_equal(i)) return false;
  }
  // The last word overlaps the previous one when n is not a multiple of 8.
  return n % 8 == 0 || word_equal(n - 8);
}

}  // namespace

bool detail::EqualsIgnoringCase(std::string_view a, std::string_view b) { return IEquals(a, b); }

std::string_view Request::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (IEquals(k, name)) return v;
  }
  return {};
}

bool Request::HasHeader(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (IEquals(k, name)) return true;
  }
  return false;
}

std::string_view Request::Param(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return {};
}

std::string_view Request::BearerToken() const {
  std::string_view value = Trim(Header("Authorization"));
  if (value.size() < 7 || !IEquals(value.substr(0, 7), "Bearer ")) return {};
  return Trim(value.substr(7));
}

bool Request::IsJson() const {
  std::string_view type = Header("Content-Type");
  type = Trim(type.substr(0, type.find(';')));
  return IEquals(type, "application/json");
}

Response Response::Json(int status, std::string json_body) {
  Response r;
  r.status = status;
  r.body = std::move(json_body);
  return r;
}

Response Response::Text(int status, std::string text, std::string content_type) {
  Response r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.body = std::move(text);
  return r;
}

Response Response::Error(int status, std::string_view code, std::string_view message) {
  std::string body = "{\"error\":";
  body += JsonQuote(code);
  body += ",\"message\":";
  body += JsonQuote(message);
  body += '}';
  return Json(status, std::move(body));
}


// Bytes that are not UTF-8 (a client's path, a header echoed into an error,
// a log line) become U+FFFD: the output is JSON every parser accepts.
std::string JsonQuote(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (std::size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      if (std::size_t n = util::Utf8SequenceAt(text, i)) {
        out.append(text.substr(i, n));
        i += n - 1;
      } else {
        out += "\\ufffd";
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

std::string_view Request::TraceId() const {
  return traceparent.size() >= 35 ? std::string_view(traceparent).substr(3, 32) : std::string_view();
}

std::string_view Request::SpanId() const {
  return traceparent.size() >= 52 ? std::string_view(traceparent).substr(36, 16)
                                  : std::string_view();
}

bool IsValidRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

void detail::NewRequestIdInto(std::string& out) {
  out.resize(32);
  PutRandomHex(out.data(), 32);
}

std::string NewRequestId() {
  std::string id;
  detail::NewRequestIdInto(id);
  return id;
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 102:
      return "Processing";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 203:
      return "Non-Authoritative Information";
    case 204:
      return "No Content";
    case 205:
      return "Reset Content";
    case 206:
      return "Partial Content";
    case 207:
      return "Multi-Status";
    case 208:
      return "Already Reported";
    case 226:
      return "IM Used";
    case 300:
      return "Multiple Choices";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 305:
      return "Use Proxy";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 407:
      return "Proxy Authentication Required";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 421:
      return "Misdirected Request";
    case 422:
      return "Unprocessable Entity";
    case 423:
      return "Locked";
    case 424:
      return "Failed Dependency";
    case 425:
      return "Too Early";
    case 426:
      return "Upgrade Required";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 451:
      return "Unavailable For Legal Reasons";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    case 506:
      return "Variant Also Negotiates";
    case 507:
      return "Insufficient Storage";
    case 508:
      return "Loop Detected";
    case 510:
      return "Not Extended";
    case 511:
      return "Network Authentication Required";
  }
  return "Unknown";
}

}  // namespace disco::http
