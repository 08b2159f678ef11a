#include "ringtgt/config/iscsi_url.hpp"

#include <charconv>

namespace ringtgt::config {

namespace {

constexpr std::string_view kScheme = "iscsi://";

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

template <typename T>
bool parse_number(std::string_view s, T max, T* out) {
  if (!all_digits(s) || s.size() > 10) return false;
  std::uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  if (v > max) return false;
  *out = static_cast<T>(v);
  return true;
}

// HOST or HOST:PORT or [V6] or [V6]:PORT.
bool parse_authority(std::string_view a, IscsiUrl* out, std::string* error) {
  std::string_view port;
  if (!a.empty() && a.front() == '[') {
    const std::size_t close = a.find(']');
    if (close == std::string_view::npos) return *error = "an IPv6 address needs its ']'", false;
    out->host = std::string(a.substr(1, close - 1));
    std::string_view rest = a.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return *error = "junk after the IPv6 address", false;
      port = rest.substr(1);
      if (port.empty()) return *error = "an empty port after ':'", false;
    }
  } else {
    const std::size_t colon = a.rfind(':');
    out->host = std::string(a.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = a.substr(colon + 1);
      if (port.empty()) return *error = "an empty port after ':'", false;
    }
  }
  if (out->host.empty()) return *error = "no host", false;
  for (char c : out->host) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '@' || c == '[' || c == ']')
      return *error = "the host holds a character a host name cannot hold", false;
  }
  if (!port.empty() && (!parse_number<std::uint16_t>(port, 65535, &out->port) || out->port == 0))
    return *error = "the port must be 1..65535", false;
  return true;
}

bool valid_target_name(std::string_view n) {
  if (n.size() < 5 || n.size() > 223) return false;
  if (n.substr(0, 4) != "iqn." && n.substr(0, 4) != "eui." && n.substr(0, 4) != "naa.")
    return false;
  for (char c : n) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == ':';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string IscsiUrl::portal() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string IscsiUrl::text() const {
  return std::string(kScheme) + portal() + "/" + target + "/" + std::to_string(lun);
}

bool parse_iscsi_url(std::string_view url, IscsiUrl* out, std::string* error) {
  IscsiUrl u;
  if (url.substr(0, kScheme.size()) != kScheme)
    return *error = "it does not start with iscsi://", false;
  std::string_view rest = url.substr(kScheme.size());
  const std::size_t slash = rest.find('/');
  if (slash == std::string_view::npos)
    return *error = "it has no /TARGET/LUN after the host", false;
  std::string_view authority = rest.substr(0, slash);
  if (authority.find('@') != std::string_view::npos)
    return *error = "credentials go in chap_user and chap_secret_file, not in the URL", false;
  if (!parse_authority(authority, &u, error)) return false;
  rest = rest.substr(slash + 1);
  const std::size_t last = rest.rfind('/');
  if (last == std::string_view::npos) return *error = "it has no /LUN after the target", false;
  const std::string_view target = rest.substr(0, last);
  if (!valid_target_name(target))
    return *error = "\"" + std::string(target) +
                    "\" is not a target name (iqn., eui. or naa., of a-z A-Z 0-9 . - :)",
           false;
  u.target = std::string(target);
  if (!parse_number<std::uint32_t>(rest.substr(last + 1), 16383, &u.lun))
    return *error = "the LUN must be a number 0..16383", false;
  *out = std::move(u);
  return true;
}

}  // namespace ringtgt::config
