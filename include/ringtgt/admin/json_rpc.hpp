// JSON-RPC 2.0 as the admin socket speaks it: one request object per line in, one
// response object per line out (newline-delimited JSON; no batches). Transport-free,
// so every answer to a bad message is testable without a socket.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ringtgt::admin {

using json = nlohmann::json;

// Error codes: the JSON-RPC 2.0 ones and ours (-32000..-32099 are for servers).
namespace rpc_error {
inline constexpr int parse_error = -32700;
inline constexpr int invalid_request = -32600;
inline constexpr int method_not_found = -32601;
inline constexpr int invalid_params = -32602;
inline constexpr int internal_error = -32603;
inline constexpr int refused = -32000;            // valid request the daemon will not do now
inline constexpr int permission_denied = -32001;  // peer not allowed on the socket
inline constexpr int config_invalid = -32002;     // reload/change: the config is not valid
}  // namespace rpc_error

// Thrown by handlers (and Params) to answer with an error.
struct RpcError : std::runtime_error {
  RpcError(int code, const std::string& message) : std::runtime_error(message), code(code) {}
  int code;
};

inline constexpr std::size_t kMaxMessageBytes = 1 << 20;  // one request line
inline constexpr int kMaxJsonDepth = 32;

// The params object of a request, with accessors that say what to fix.
class Params {
 public:
  explicit Params(const json& p) : p_(p) {}
  const json& raw() const { return p_; }
  bool has(const char* key) const { return p_.contains(key); }
  std::string string(const char* key) const;  // required, non-empty
  std::optional<std::string> optional_string(const char* key) const;
  std::uint64_t uint(const char* key, std::uint64_t lo, std::uint64_t hi) const;
  std::optional<std::uint64_t> optional_uint(const char* key, std::uint64_t lo,
                                             std::uint64_t hi) const;
  bool flag(const char* key, bool fallback) const;
  std::optional<std::vector<std::string>> optional_strings(const char* key) const;
  // Every key is one of allowed (typo protection, as in the config file).
  void only(std::initializer_list<const char*> allowed) const;
  void only(const std::vector<std::string>& allowed) const;

 private:
  const json& p_;
};

// Answers one request, now or later, exactly once.
class Responder {
 public:
  using Send = std::function<void(const json& response)>;
  Responder(json id, Send send) : id_(std::move(id)), send_(std::move(send)) {}
  void ok(json result) const;
  void fail(int code, const std::string& message) const;

 private:
  json id_;
  Send send_;  // null for notifications (no id): nothing is sent
};

class Dispatcher {
 public:
  using Handler = std::function<void(const Params&, const Responder&)>;
  void add(std::string method, Handler handler);
  std::vector<std::string> methods() const;

  // Handles one line (without its newline). send gets the response (serialised, no
  // newline) now or later. Returns false when no response will come (a notification).
  bool handle_line(std::string_view line, std::function<void(std::string)> send) const;

 private:
  std::map<std::string, Handler, std::less<>> handlers_;
};

json error_response(const json& id, int code, const std::string& message);

}  // namespace ringtgt::admin
