#include "ringtgt/lun/copy_health.hpp"

#include <atomic>
#include <cstdint>

namespace ringtgt::lun {

std::optional<std::string> degraded_copies(const metrics::MirrorCounters& mirror) {
  std::string names;
  std::uint32_t out = 0;
  for (const auto& c : mirror.copies) {
    if (c->in_sync.load(std::memory_order_relaxed)) continue;
    ++out;
    names += (names.empty() ? "" : ", ") + c->name;
  }
  if (out == 0) return std::nullopt;
  const auto total = static_cast<std::uint32_t>(mirror.copies.size());
  std::string text =
      std::to_string(out) + " of " + std::to_string(total) + " copies out of sync (" + names + ")";
  if (total - out < mirror.ack_quorum) {
    text += "; below ack_quorum " + std::to_string(mirror.ack_quorum);
  }
  return text;
}

}  // namespace ringtgt::lun
