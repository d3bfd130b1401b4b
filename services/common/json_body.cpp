#include "json_body.h"

#include "json_writer.h"

namespace disco::service {
namespace {

using json = nlohmann::json;
constexpr int kMaxDepth = 16;

// nlohmann's DOM builder, plus the text of top-level numbers and a depth cap.
class RecordingSax {
 public:
  RecordingSax(json& root, JsonBody& body) : dom_(root, false), body_(body) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) {
    Record(std::to_string(v));
    return dom_.number_integer(v);
  }
  bool number_unsigned(json::number_unsigned_t v) {
    Record(std::to_string(v));
    return dom_.number_unsigned(v);
  }
  bool number_float(json::number_float_t v, const std::string& text) {
    Record(text);
    return dom_.number_float(v, text);
  }
  bool string(std::string& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) { return ++depth_ <= kMaxDepth && dom_.start_object(n); }
  bool key(std::string& k) {
    if (depth_ == 1) key_ = k;
    return dom_.key(k);
  }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return ++depth_ <= kMaxDepth && dom_.start_array(n); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) {
    error_ = "invalid JSON near byte " + std::to_string(position);
    return false;
  }

  bool too_deep() const { return depth_ > kMaxDepth; }
  const std::string& error() const { return error_; }

 private:
  void Record(std::string text) {
    if (depth_ == 1) body_.raw_numbers[key_] = std::move(text);
  }

  nlohmann::detail::json_sax_dom_parser<json> dom_;
  JsonBody& body_;
  int depth_ = 0;
  std::string key_;
  std::string error_;
};

std::string_view TypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "a number";
  }
}

}  // namespace

http::Response FieldError(std::string_view field, std::string_view message) {
  std::string body;
  JsonWriter(body)
      .BeginObject()
      .Field("error", "validation_failed")
      .Field("message", message)
      .Field("field", field)
      .EndObject();
  return http::Response::Json(422, std::move(body));
}

std::optional<http::Response> ParseJsonObject(const http::Request& request, JsonBody& out) {
  if (!request.IsJson()) {
    return http::Response::Error(415, "unsupported_media_type",
                                 "Content-Type must be application/json");
  }
  if (request.body.empty()) return http::Response::Error(400, "bad_json", "request body is empty");
  RecordingSax sax(out.value, out);
  bool ok = json::sax_parse(request.body, &sax, json::input_format_t::json, true, false);
  if (!ok) {
    if (sax.too_deep()) return http::Response::Error(400, "bad_json", "JSON nested too deeply");
    return http::Response::Error(400, "bad_json",
                                 sax.error().empty() ? "invalid JSON" : sax.error());
  }
  if (!out.value.is_object()) {
    return http::Response::Error(422, "validation_failed", "request body must be a JSON object");
  }
  return std::nullopt;
}

std::optional<http::Response> ReadString(const JsonBody& body, std::string_view field,
                                         std::string& out) {
  auto it = body.value.find(field);
  if (it == body.value.end() || it->is_null())
    return FieldError(field, std::string(field) + " is required");
  if (!it->is_string()) {
    return FieldError(field,
                      std::string(field) + " must be a string, not " + std::string(TypeName(*it)));
  }
  out = it->get<std::string>();
  return std::nullopt;
}

std::optional<http::Response> ReadInteger(const JsonBody& body, std::string_view field,
                                          std::int64_t& out) {
  auto it = body.value.find(field);
  if (it == body.value.end() || it->is_null())
    return FieldError(field, std::string(field) + " is required");
  if (it->is_number_integer()) {
    if (it->is_number_unsigned() &&
        it->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
      return FieldError(field, std::string(field) + " is out of range");
    }
    out = it->get<std::int64_t>();
    return std::nullopt;
  }
  if (it->is_number_float())
    return FieldError(field, std::string(field) + " must be a whole number");
  return FieldError(field,
                    std::string(field) + " must be an integer, not " + std::string(TypeName(*it)));
}

}  // namespace disco::service
