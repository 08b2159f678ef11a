#include "ringtgt/admin/json_rpc.hpp"

#include <spdlog/spdlog.h>

namespace ringtgt::admin {

namespace {

// Nesting depth of JSON text outside strings; stops counting past the limit. Keeps a
// hostile "[[[[..." from costing more than a scan.
bool too_deep(std::string_view s) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

std::string type_of(const json& j) {
  if (j.is_null()) return "null";
  if (j.is_boolean()) return "a boolean";
  if (j.is_number()) return "a number";
  if (j.is_string()) return "a string";
  if (j.is_array()) return "an array";
  return "an object";
}

}  // namespace

json error_response(const json& id, int code, const std::string& message) {
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", message}}}};
}

void Responder::ok(json result) const {
  if (send_) send_(json{{"jsonrpc", "2.0"}, {"id", id_}, {"result", std::move(result)}});
}

void Responder::fail(int code, const std::string& message) const {
  if (send_) send_(error_response(id_, code, message));
}

std::string Params::string(const char* key) const {
  auto v = optional_string(key);
  if (!v)
    throw RpcError(rpc_error::invalid_params, std::string("missing parameter \"") + key + "\"");
  return *v;
}

std::optional<std::string> Params::optional_string(const char* key) const {
  auto it = p_.find(key);
  if (it == p_.end() || it->is_null()) return std::nullopt;
  if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
    throw RpcError(
        rpc_error::invalid_params,
        std::string("parameter \"") + key + "\" must be a non-empty string, not " + type_of(*it));
  }
  return it->get<std::string>();
}

std::uint64_t Params::uint(const char* key, std::uint64_t lo, std::uint64_t hi) const {
  auto v = optional_uint(key, lo, hi);
  if (!v)
    throw RpcError(rpc_error::invalid_params, std::string("missing parameter \"") + key + "\"");
  return *v;
}

std::optional<std::uint64_t> Params::optional_uint(const char* key, std::uint64_t lo,
                                                   std::uint64_t hi) const {
  auto it = p_.find(key);
  if (it == p_.end() || it->is_null()) return std::nullopt;
  const std::string range = std::to_string(lo) + ".." + std::to_string(hi);
  if (!it->is_number_integer() ||
      (it->is_number_integer() && !it->is_number_unsigned() && it->get<std::int64_t>() < 0)) {
    throw RpcError(rpc_error::invalid_params, std::string("parameter \"") + key +
                                                  "\" must be an integer " + range + ", not " +
                                                  (it->is_number() ? it->dump() : type_of(*it)));
  }
  std::uint64_t v = it->get<std::uint64_t>();
  if (v < lo || v > hi) {
    throw RpcError(rpc_error::invalid_params, std::string("parameter \"") + key + "\" must be " +
                                                  range + ", not " + std::to_string(v));
  }
  return v;
}

bool Params::flag(const char* key, bool fallback) const {
  auto it = p_.find(key);
  if (it == p_.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    throw RpcError(rpc_error::invalid_params, std::string("parameter \"") + key +
                                                  "\" must be true or false, not " + type_of(*it));
  }
  return it->get<bool>();
}

std::optional<std::vector<std::string>> Params::optional_strings(const char* key) const {
  auto it = p_.find(key);
  if (it == p_.end() || it->is_null()) return std::nullopt;
  bool ok = it->is_array();
  if (ok)
    for (const auto& e : *it) ok = ok && e.is_string();
  if (!ok) {
    throw RpcError(rpc_error::invalid_params,
                   std::string("parameter \"") + key + "\" must be an array of strings");
  }
  return it->get<std::vector<std::string>>();
}

void Params::only(std::initializer_list<const char*> allowed) const {
  only(std::vector<std::string>(allowed.begin(), allowed.end()));
}

void Params::only(const std::vector<std::string>& allowed) const {
  for (const auto& [k, v] : p_.items()) {
    bool known = false;
    std::string names;
    for (const auto& a : allowed) {
      known = known || k == a;
      names += (names.empty() ? "" : ", ") + a;
    }
    if (!known) {
      throw RpcError(rpc_error::invalid_params,
                     "unknown parameter \"" + k +
                         "\" (allowed: " + (names.empty() ? std::string("none") : names) + ")");
    }
  }
}

void Dispatcher::add(std::string method, Handler handler) {
  handlers_[std::move(method)] = std::move(handler);
}

std::vector<std::string> Dispatcher::methods() const {
  std::vector<std::string> out;
  for (const auto& [name, h] : handlers_) out.push_back(name);
  return out;
}

bool Dispatcher::handle_line(std::string_view line, std::function<void(std::string)> send) const {
  auto answer = [send](const json& j) {
    if (auto e = j.find("error"); e != j.end())
      spdlog::warn("admin: answered error {}: {}", (*e)["code"].dump(),
                   (*e)["message"].get<std::string>());
    send(j.dump(-1, ' ', false, json::error_handler_t::replace));
    return true;
  };
  if (line.size() > kMaxMessageBytes) {
    return answer(
        error_response(nullptr, rpc_error::invalid_request,
                       "request longer than " + std::to_string(kMaxMessageBytes) + " bytes"));
  }
  if (too_deep(line)) {
    return answer(
        error_response(nullptr, rpc_error::invalid_request,
                       "request nested deeper than " + std::to_string(kMaxJsonDepth) + " levels"));
  }
  json req;
  try {
    req = json::parse(line);
  } catch (const json::parse_error& e) {
    return answer(error_response(nullptr, rpc_error::parse_error,
                                 std::string("parse error: not valid JSON (") + e.what() +
                                     "); send one JSON-RPC 2.0 object per line"));
  }
  if (!req.is_object()) {
    return answer(error_response(nullptr, rpc_error::invalid_request,
                                 req.is_array()
                                     ? "batches are not supported: send one request object per line"
                                     : "a request must be a JSON object"));
  }
  json id = nullptr;
  bool notification = true;
  if (auto it = req.find("id"); it != req.end()) {
    if (!it->is_null() && !it->is_string() && !it->is_number_integer()) {
      return answer(error_response(nullptr, rpc_error::invalid_request,
                                   "\"id\" must be a string or an integer"));
    }
    id = *it;
    notification = false;
  }
  if (auto it = req.find("jsonrpc"); it == req.end() || *it != "2.0") {
    return answer(error_response(id, rpc_error::invalid_request, "\"jsonrpc\" must be \"2.0\""));
  }
  auto m = req.find("method");
  if (m == req.end() || !m->is_string()) {
    return answer(error_response(id, rpc_error::invalid_request, "\"method\" must be a string"));
  }
  const std::string method = m->get<std::string>();
  static const json kNoParams = json::object();
  auto p = req.find("params");
  if (p != req.end() && !p->is_object() && !p->is_null()) {
    return answer(error_response(id, rpc_error::invalid_params,
                                 "\"params\" must be an object of named parameters"));
  }
  auto h = handlers_.find(method);
  if (h == handlers_.end()) {
    return answer(error_response(
        id, rpc_error::method_not_found,
        "method not found: \"" + method + "\" (ringtgtctl --help lists the commands)"));
  }
  Responder r(id, notification ? Responder::Send{}
                               : Responder::Send([answer](const json& j) { answer(j); }));
  const json& params = (p == req.end() || p->is_null()) ? kNoParams : *p;
  try {
    h->second(Params(params), r);
  } catch (const RpcError& e) {
    r.fail(e.code, e.what());
  } catch (const std::exception& e) {
    spdlog::error("admin: {} failed: {}", method, e.what());
    r.fail(rpc_error::refused, e.what());
  }
  return !notification;
}

}  // namespace ringtgt::admin
