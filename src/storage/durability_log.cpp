#include "ringtgt/storage/durability_log.hpp"

#include <map>
#include <set>

namespace ringtgt::storage {

// A power cut after event k loses a promised write exactly when its ack is at
// or before k and it became durable after k (or never). Durability only grows
// along the log, so checking each ack against what was durable at the ack
// covers every cut point at once.
std::vector<std::string> check_durability(const std::vector<DurabilityEvent>& log) {
  using Kind = DurabilityEvent::Kind;
  std::vector<std::string> problems;
  std::set<std::uint64_t> durable;   // writes durable so far
  std::set<std::uint64_t> in_cache;  // written, waiting for a flush to start
  std::map<std::uint64_t, std::set<std::uint64_t>> covering;   // flush -> writes it covers
  std::set<std::uint64_t> acked;                               // writes acknowledged so far
  std::map<std::uint64_t, std::set<std::uint64_t>> sync_owes;  // sync -> writes acked before it
  for (std::size_t i = 0; i < log.size(); ++i) {
    const auto& e = log[i];
    switch (e.kind) {
      case Kind::write_done:
        if (e.durable) {
          durable.insert(e.id);
        } else {
          in_cache.insert(e.id);
        }
        break;
      case Kind::flush_started:
        covering[e.flush_id] = std::move(in_cache);
        in_cache.clear();
        break;
      case Kind::flush_done:
        if (e.result == 0) {
          for (auto id : covering[e.flush_id]) durable.insert(id);
        } else {
          // Lost: the kernel may have dropped them; no later flush brings them back.
        }
        covering.erase(e.flush_id);
        break;
      case Kind::sync_requested:
        sync_owes[e.id] = acked;
        break;
      case Kind::sync_ack:
        if (e.result == 0) {
          for (auto id : sync_owes[e.id]) {
            if (durable.count(id) != 0) continue;
            problems.push_back("event " + std::to_string(i) + ": SYNCHRONIZE CACHE " +
                               std::to_string(e.id) + " acknowledged while write " +
                               std::to_string(id) + ", acknowledged before it, is not durable");
          }
        }
        sync_owes.erase(e.id);
        break;
      case Kind::ack:
        if (e.result > 0) acked.insert(e.id);
        if (e.must_be_durable && e.result > 0 && durable.count(e.id) == 0) {
          problems.push_back("event " + std::to_string(i) + ": write " + std::to_string(e.id) +
                             " (offset " + std::to_string(e.offset) + ", " +
                             std::to_string(e.length) +
                             " bytes) acknowledged as durable before any flush covered it; a "
                             "power cut here loses it");
        }
        break;
    }
  }
  return problems;
}

}  // namespace ringtgt::storage
