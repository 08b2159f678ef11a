// iSCSI text key=value data (RFC 7143 §6.1): the data segment of Login and Text
// PDUs is a sequence of "key=value\0" records. Pure parsing/serialization.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ringtgt::iscsi {

struct KeyValue {
  std::string key;
  std::string value;
  bool operator==(const KeyValue&) const = default;
};

// Bounds on what one (joined) text/login data segment may hold.
struct TextLimits {
  std::size_t max_bytes = 65536;  // whole text, padding included
  std::size_t max_pairs = 256;
  std::size_t max_key = 63;      // RFC 7143 §6.1: key names are at most 63 bytes
  std::size_t max_value = 8192;  // RFC 7143 §6.1: text values up to 8192 bytes
};

enum class TextParseError {
  none,
  malformed,
  too_large,
  too_many_keys,
  key_too_long,
  value_too_long
};

// Parses "key=value\0key=value\0..." into `out` (cleared first). The final NUL may be
// missing, and empty records (padding NULs, anywhere) are skipped. A key is one or more
// letters, digits, '.', '-', '+', '@', '_' (RFC 7143 §6.1), or starts with "X#" (§13.5.4);
// every record must contain '='. The value may be empty; its meaning is the caller's.
// On error `out` holds the records parsed before the bad one.
TextParseError parse_text(const std::uint8_t* data, std::size_t len, std::vector<KeyValue>& out,
                          const TextLimits& limits = {});
TextParseError parse_text(std::string_view text, std::vector<KeyValue>& out,
                          const TextLimits& limits = {});

const char* to_string(TextParseError);

// True if `key` is a well-formed key name (see parse_text).
bool valid_key_name(std::string_view key);

// Appends "key=value\0".
void append_key(std::string& out, std::string_view key, std::string_view value);

}  // namespace ringtgt::iscsi
