#include "ringtgt/metrics/watchdog.hpp"

namespace ringtgt::metrics {

HeartbeatCheck::HeartbeatCheck(std::vector<const WorkerCounters*> workers)
    : workers_(std::move(workers)) {
  for (const auto* w : workers_) last_.push_back(w->heartbeat.get());
}

std::vector<unsigned> HeartbeatCheck::stalled() {
  std::vector<unsigned> out;
  for (unsigned i = 0; i < workers_.size(); ++i) {
    std::uint64_t now = workers_[i]->heartbeat.get();
    if (now == last_[i]) out.push_back(i);
    last_[i] = now;
  }
  return out;
}

}  // namespace ringtgt::metrics
