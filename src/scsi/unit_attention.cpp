#include "ringtgt/scsi/unit_attention.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace ringtgt::scsi {

std::string initiator_port_name(const Nexus& nexus) {
  return fmt::format("{},i,0x{:012x}", nexus.initiator_name,
                     (nexus.session_id >> 16) & 0xffffffffffffull);
}

std::optional<InitiatorPort> parse_initiator_port_name(std::string_view port) {
  constexpr std::string_view kSeparator = ",i,0x";
  const std::size_t at = port.rfind(kSeparator);
  if (at == std::string_view::npos || at == 0) return std::nullopt;
  const std::string_view hex = port.substr(at + kSeparator.size());
  InitiatorPort out;
  if (hex.size() != 12) return std::nullopt;
  auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), out.isid, 16);
  if (ec != std::errc{} || end != hex.data() + hex.size()) return std::nullopt;
  out.initiator_name = std::string(port.substr(0, at));
  return out;
}

namespace {

// SPC-4 5.14: the power on / reset family (29h) is reported before any
// other condition; among the rest, oldest first.
int precedence(const SenseCode& c) {
  return c.asc == 0x29 ? 0 : 1;
}

}  // namespace

void UnitAttentions::add(Pending& p, std::uint8_t asc, std::uint8_t ascq) {
  const SenseCode code{0x06, asc, ascq};
  for (const auto& c : p.queue) {
    if (c.asc == asc && c.ascq == ascq) return;
  }
  auto at = std::find_if(p.queue.begin(), p.queue.end(),
                         [&](const SenseCode& c) { return precedence(c) > precedence(code); });
  if (p.queue.size() >= max_pending) {
    if (at == p.queue.end()) return;
    p.queue.pop_back();
  }
  p.queue.insert(at, code);
}

bool UnitAttentions::first_contact(const std::string& port, bool power_on) {
  Pending& p = nexuses_[port];
  if (p.seen) return false;
  p.seen = true;
  if (power_on) add(p, 0x29, 0x00);
  return true;
}

void UnitAttentions::post_all(std::uint8_t asc, std::uint8_t ascq, const std::string& except) {
  for (auto& [port, p] : nexuses_) {
    if (port != except) add(p, asc, ascq);
  }
}

void UnitAttentions::post(const std::string& port, std::uint8_t asc, std::uint8_t ascq) {
  add(nexuses_[port], asc, ascq);
}

bool UnitAttentions::pop(const std::string& port, SenseCode& out) {
  auto it = nexuses_.find(port);
  if (it == nexuses_.end() || it->second.queue.empty()) return false;
  out = it->second.queue.front();
  it->second.queue.erase(it->second.queue.begin());
  return true;
}

bool UnitAttentions::pending(const std::string& port) const {
  auto it = nexuses_.find(port);
  return it != nexuses_.end() && !it->second.queue.empty();
}

void UnitAttentions::forget(const std::string& port) {
  nexuses_.erase(port);
}

}  // namespace ringtgt::scsi
