// Whether every reactor is alive: each bumps its heartbeat on its tick, and a
// check passes only when all of them moved since the previous check. The
// daemon pings the systemd watchdog only after a passing check, so a stuck
// reactor gets the service restarted.
#pragma once

#include <cstdint>
#include <vector>

#include "ringtgt/metrics/counters.hpp"

namespace ringtgt::metrics {

class HeartbeatCheck {
 public:
  explicit HeartbeatCheck(std::vector<const WorkerCounters*> workers);
  // The indexes of the workers whose heartbeat has not moved since the last
  // call (the first call compares with the values seen at construction).
  std::vector<unsigned> stalled();

 private:
  std::vector<const WorkerCounters*> workers_;
  std::vector<std::uint64_t> last_;
};

}  // namespace ringtgt::metrics
