// [testing] durability_log: the daemon's side of the recording seam.
#pragma once

#include <memory>

#include "ringtgt/config/config.hpp"
#include "ringtgt/storage/durability_log.hpp"

namespace ringtgt::daemon {

// Opens the durability log the config names (none: returns null and
// records nothing) and installs it as the process's seam, with a warning in
// the log: it costs a hash of every block written. Throws
// std::system_error when the file cannot be created. Call before any LUN is
// opened; keep the result until the workers have stopped (its destructor
// writes out what is buffered).
std::unique_ptr<storage::DurabilityLog> start_durability_testing(const config::Config& cfg);

}  // namespace ringtgt::daemon
