// What a mirrored LUN (storage::MirroredBackend) counts for /metrics: each
// copy's state and writes, read repairs and losses of the write quorum.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ringtgt::metrics {

// Shared by every reactor that serves the LUN (relaxed atomics). The copies'
// in_sync flags are the backend's own state, not a copy of it.
struct MirrorCounters {
  struct Copy {
    Copy(std::string n, std::string d) : name(std::move(n)), failure_domain(std::move(d)) {}
    const std::string name;            // "primary" for the LUN's own path
    const std::string failure_domain;  // may be empty
    std::atomic<bool> in_sync{true};
    std::atomic<std::uint64_t> writes{0};  // writes, zeroings and unmaps it completed
  };
  std::vector<std::unique_ptr<Copy>> copies;  // [0]: the primary; fixed once built
  std::uint32_t ack_quorum = 1;
  std::atomic<std::uint64_t> read_repairs{0};   // failed reads served from another copy and
                                                // written back to the failing one
  std::atomic<std::uint64_t> quorum_losses{0};  // times in-sync copies fell below ack_quorum
};

}  // namespace ringtgt::metrics
