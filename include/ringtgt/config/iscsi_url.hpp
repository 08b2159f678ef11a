// iscsi://HOST[:PORT]/IQN/LUN: where a remote copy of a mirrored LUN lives.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ringtgt::config {

struct IscsiUrl {
  std::string host;  // a name or an address; an IPv6 address without its brackets
  std::uint16_t port = 3260;
  std::string target;  // the target's name (iqn., eui. or naa.)
  std::uint32_t lun = 0;
  // The portal as libiscsi takes it: "HOST:PORT", "[V6]:PORT".
  std::string portal() const;
  // The URL again, in its canonical form (the port always written).
  std::string text() const;
  bool operator==(const IscsiUrl&) const = default;
};

// Parses url; on a bad one returns false and says why in *error (without the
// URL itself: the caller quotes it). Written here rather than with libiscsi's
// iscsi_parse_full_url, which needs a context, accepts user:password@ in the
// URL (a secret in the config file) and answers errors in a context's buffer.
bool parse_iscsi_url(std::string_view url, IscsiUrl* out, std::string* error);

}  // namespace ringtgt::config
