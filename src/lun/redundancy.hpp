// What a mirrored LUN survives, from its copies' failure domains and its
// ack_quorum: the line the daemon logs when it opens the LUN (a warning when
// copies meant to protect each other share a domain), and what ringtgtctl
// copy list and /metrics show.
#pragma once

#include <string>

#include "ringtgt/config/config.hpp"

namespace ringtgt::lun {

struct Redundancy {
  bool warn = false;  // copies share a failure domain, or the LUN survives nothing
  std::string text;   // "survives the loss of 1 copy", "survives nothing: every copy is on X"
};

// Copies without a failure_domain count as apart from every other copy.
Redundancy redundancy_of(const config::Lun& l);

}  // namespace ringtgt::lun
