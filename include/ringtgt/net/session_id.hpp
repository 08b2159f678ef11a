// Which session a login belongs to, across the reactors.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

namespace ringtgt::net {

// A session is identified by its initiator name, ISID and target (RFC 7143 §4.4.3: the
// SSID is the ISID with the target portal group, and each target here has its own;
// "" for discovery). A login with the id of a session still open reinstates it.
struct SessionId {
  std::string initiator;
  std::uint64_t isid = 0;
  std::string target;
  auto operator<=>(const SessionId&) const = default;
};

}  // namespace ringtgt::net
