#include "durability_testing.hpp"

#include <spdlog/spdlog.h>

namespace ringtgt::daemon {

std::unique_ptr<storage::DurabilityLog> start_durability_testing(const config::Config& cfg) {
  const config::DurabilityTesting& t = cfg.durability_testing;
  if (t.log_path.empty()) return nullptr;
  auto log = std::make_unique<storage::DurabilityLog>(t.log_path);
  spdlog::warn(
      "TESTING: recording every write, flush and acknowledgement in {} ([testing] "
      "durability_log): slower, and not for production",
      t.log_path);
  if (t.ack_before_flush) {
    spdlog::warn(
        "TESTING: [testing] ack_before_flush: durable writes are acknowledged BEFORE they are "
        "durable; a power cut loses acknowledged data. Only to test the durability checker");
  }
  storage::set_durability_seam({log.get(), t.ack_before_flush});
  return log;
}

}  // namespace ringtgt::daemon
