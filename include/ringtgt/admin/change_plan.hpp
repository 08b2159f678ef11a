// What it takes to go from the running configuration to another one, live: the
// difference as steps the control plane applies, and what only a restart can change.
#pragma once

#include <cstdint>
#include <set>
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
  // replace_lun: what about a GOOD the change weakens ("write_ack writethrough ->
  // writeback"), or "" when it does not. An initiator reads the caching mode page when
  // it attaches the disk, not on a unit attention, so one logged in keeps believing the
  // stronger promise (Linux sends no flush to a write-through disk): such a step waits
  // until no session uses the target, unless forced (ack_change_blocked_by_sessions).
  std::string weakens_ack;
  // replace_lun: the new policy promises more (writeback -> writethrough): what the old
  // one left in the host's cache is flushed before the change is reported.
  bool strengthens_ack = false;
};

struct ChangePlan {
  // In the order they are applied: portals and targets added first, removals last.
  std::vector<ChangeStep> steps;
  // Differences left alone, each saying what and why ("workers: 2 -> 4 (needs restart)").
  std::vector<std::string> needs_restart;
  // Steps held back until no session uses their target (defer_ack_weakening), each
  // saying why and what to do.
  std::vector<std::string> deferred;
};

ChangePlan plan_changes(const config::Config& running, const config::Config& next);

// What replacing LUN config `from` with `to` does to what a GOOD means: "" when nothing
// is weakened, else what is, e.g. "write_ack writethrough -> writeback".
std::string ack_weakening(const config::Lun& from, const config::Lun& to);
bool ack_strengthening(const config::Lun& from, const config::Lun& to);

// Takes out of `plan` the steps that weaken acknowledgements of a target with a logged-in
// session (`targets_in_use`), puts the running LUN config back into `next` for them (so
// the running configuration says what is served and the next reload tries again), and
// adds one message per step to plan.deferred saying why and what to do.
void defer_ack_weakening(ChangePlan& plan, config::Config& next, const config::Config& running,
                         const std::set<std::string>& targets_in_use);

}  // namespace ringtgt::admin
