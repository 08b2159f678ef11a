// What a mirrored LUN that lost copies tells the operator outside /metrics:
// the words systemd's STATUS= line (and so `systemctl status`) carries.
#pragma once

#include <optional>
#include <string>

#include "ringtgt/metrics/mirror_counters.hpp"

namespace ringtgt::lun {

// nullopt while every copy is in sync; otherwise e.g. "1 of 3 copies out of
// sync (disk3)", with "; below ack_quorum 2" once writes are refused.
std::optional<std::string> degraded_copies(const metrics::MirrorCounters& mirror);

}  // namespace ringtgt::lun
