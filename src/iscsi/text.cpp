#include "ringtgt/iscsi/text.hpp"

#include <cstring>

namespace ringtgt::iscsi {

namespace {

bool key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '+' || c == '@' || c == '_';
}

}  // namespace

bool valid_key_name(std::string_view key) {
  if (key.empty()) return false;
  std::string_view rest = key;
  // "X#<IANA-registered-string>" public extension keys (RFC 7143 §13.5.4).
  if (rest.size() > 2 && rest[0] == 'X' && rest[1] == '#') rest.remove_prefix(2);
  for (char c : rest) {
    if (!key_char(c)) return false;
  }
  return true;
}

TextParseError parse_text(const std::uint8_t* data, std::size_t len, std::vector<KeyValue>& out,
                          const TextLimits& limits) {
  out.clear();
  if (len > limits.max_bytes) return TextParseError::too_large;
  const char* p = reinterpret_cast<const char*>(data);
  const char* end = p + len;
  while (p < end) {
    const void* nul = std::memchr(p, '\0', static_cast<std::size_t>(end - p));
    const char* record_end = nul ? static_cast<const char*>(nul) : end;
    std::string_view record(p, static_cast<std::size_t>(record_end - p));
    p = nul ? record_end + 1 : end;
    if (record.empty()) continue;  // padding

    std::size_t eq = record.find('=');
    if (eq == std::string_view::npos || eq == 0) return TextParseError::malformed;
    std::string_view key = record.substr(0, eq);
    std::string_view value = record.substr(eq + 1);
    if (key.size() > limits.max_key) return TextParseError::key_too_long;
    if (!valid_key_name(key)) return TextParseError::malformed;
    if (value.size() > limits.max_value) return TextParseError::value_too_long;
    if (out.size() >= limits.max_pairs) return TextParseError::too_many_keys;
    out.push_back(KeyValue{std::string(key), std::string(value)});
  }
  return TextParseError::none;
}

TextParseError parse_text(std::string_view text, std::vector<KeyValue>& out,
                          const TextLimits& limits) {
  return parse_text(reinterpret_cast<const std::uint8_t*>(text.data()), text.size(), out, limits);
}

const char* to_string(TextParseError e) {
  switch (e) {
    case TextParseError::none:
      return "none";
    case TextParseError::malformed:
      return "malformed key=value text";
    case TextParseError::too_large:
      return "text data too large";
    case TextParseError::too_many_keys:
      return "too many keys";
    case TextParseError::key_too_long:
      return "key name too long";
    case TextParseError::value_too_long:
      return "value too long";
  }
  return "unknown";
}

void append_key(std::string& out, std::string_view key, std::string_view value) {
  out.reserve(out.size() + key.size() + value.size() + 2);
  out.append(key);
  out.push_back('=');
  out.append(value);
  out.push_back('\0');
}

}  // namespace ringtgt::iscsi
