// What it takes to go from the running configuration to another one, live: the
// difference as steps the control plane applies, and what only a restart can change.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ringtgt/config/config.hpp"

namespace ringtgt::admin {

struct ChangeStep {
  enum class Kind {
    add_portal,
    remove_portal,
    add_target,
    remove_target,
    set_target_initiators,
    set_target_chap,
    add_lun,
    remove_lun,
    replace_lun,  // its backing changed (path, block size, read-only, write_ack, ...)
    resize_lun,   // grows
    set_lun_initiators,
  };
  Kind kind;
  std::string target;         // target steps and LUN steps
  std::uint32_t lun = 0;      // LUN steps
  config::Portal portal;      // portal steps
  config::Target target_cfg;  // add_target, set_target_* (the new settings)
  config::Lun lun_cfg;        // LUN steps (the new settings; remove: the old ones)
  std::string description;    // for logs and the RPC answer
};

struct ChangePlan {
  // In the order they are applied: portals and targets added first, removals last.
  std::vector<ChangeStep> steps;
  // Differences left alone, each saying what and why ("workers: 2 -> 4 (needs restart)").
  std::vector<std::string> needs_restart;
};

ChangePlan plan_changes(const config::Config& running, const config::Config& next);

}  // namespace ringtgt::admin
