#include "ringtgt/admin/change_plan.hpp"

#include <algorithm>
#include <map>

namespace ringtgt::admin {

namespace {

using Kind = ChangeStep::Kind;

std::string list(const std::vector<std::string>& v) {
  if (v.empty()) return "(everyone)";
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

bool same_chap(const std::optional<config::Chap>& a, const std::optional<config::Chap>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return true;
  return a->user == b->user && a->secret == b->secret && a->mutual_user == b->mutual_user &&
         a->mutual_secret == b->mutual_secret;
}

// Everything that is fixed once the LU is open.
bool same_backing(const config::Lun& a, const config::Lun& b) {
  return a.path == b.path && a.rbd == b.rbd && a.block_size == b.block_size &&
         a.physical_block_size == b.physical_block_size && a.max_transfer == b.max_transfer &&
         a.read_only == b.read_only && a.direct_io == b.direct_io && a.write_ack == b.write_ack &&
         a.serial == b.serial && a.provisioning == b.provisioning &&
         a.allow_sanitize == b.allow_sanitize && a.sanitize_rate == b.sanitize_rate &&
         a.copies == b.copies && a.ack_quorum == b.ack_quorum &&
         a.on_quorum_loss == b.on_quorum_loss && a.quorum_wait_seconds == b.quorum_wait_seconds &&
         a.failure_domain == b.failure_domain && a.resync_region_size == b.resync_region_size &&
         a.resync_rate == b.resync_rate;
}

std::string lun_name(const std::string& target, std::uint32_t lun) {
  return "target " + target + " LUN " + std::to_string(lun);
}

void global_differences(const config::Config& a, const config::Config& b,
                        std::vector<std::string>& out) {
  auto note = [&out](const std::string& what, const std::string& from, const std::string& to) {
    out.push_back(what + ": " + from + " -> " + to + " (needs a restart)");
  };
  if (a.workers != b.workers) note("workers", std::to_string(a.workers), std::to_string(b.workers));
  if (a.log_level != b.log_level) note("log_level", a.log_level, b.log_level);
  if (a.state_dir != b.state_dir) note("state_dir", a.state_dir, b.state_dir);
  if (a.admin.socket != b.admin.socket) note("admin.socket", a.admin.socket, b.admin.socket);
  if (a.admin.group != b.admin.group) note("admin.group", a.admin.group, b.admin.group);
  if (!same_chap(a.discovery_chap, b.discovery_chap))
    out.push_back("[discovery] CHAP settings changed (needs a restart)");
  auto listen = [](const config::Config& c) {
    return c.metrics.listen ? c.metrics.listen->to_string() : std::string("off");
  };
  if (listen(a) != listen(b)) note("metrics.listen", listen(a), listen(b));
  // The durability log is opened once, before any LUN (tests only).
  const auto& da = a.durability_testing;
  const auto& db = b.durability_testing;
  if (da.log_path != db.log_path) note("testing.durability_log", da.log_path, db.log_path);
  if (da.ack_before_flush != db.ack_before_flush) {
    note("testing.ack_before_flush", da.ack_before_flush ? "true" : "false",
         db.ack_before_flush ? "true" : "false");
  }
  if (a.fault_testing.fault_injection != b.fault_testing.fault_injection) {
    note("testing.fault_injection", a.fault_testing.fault_injection ? "true" : "false",
         b.fault_testing.fault_injection ? "true" : "false");
  }
  auto limit = [&](const char* key, std::uint64_t p, std::uint64_t q) {
    if (p != q) note(std::string("limits.") + key, std::to_string(p), std::to_string(q));
  };
  limit("max_sessions", a.limits.max_sessions, b.limits.max_sessions);
  limit("max_sessions_per_initiator", a.limits.max_sessions_per_initiator,
        b.limits.max_sessions_per_initiator);
  limit("max_connections", a.limits.max_connections, b.limits.max_connections);
  limit("max_buffer_memory", a.limits.max_buffer_memory, b.limits.max_buffer_memory);
  limit("max_session_output", a.limits.max_session_output, b.limits.max_session_output);
  const auto& x = a.iscsi;
  const auto& y = b.iscsi;
  auto num = [&](const char* key, std::uint32_t p, std::uint32_t q) {
    if (p != q) note(std::string("iscsi.") + key, std::to_string(p), std::to_string(q));
  };
  auto flag = [&](const char* key, bool p, bool q) {
    if (p != q) note(std::string("iscsi.") + key, p ? "true" : "false", q ? "true" : "false");
  };
  num("max_recv_data_segment_length", x.max_recv_data_segment_length,
      y.max_recv_data_segment_length);
  num("max_burst_length", x.max_burst_length, y.max_burst_length);
  num("first_burst_length", x.first_burst_length, y.first_burst_length);
  flag("initial_r2t", x.initial_r2t, y.initial_r2t);
  flag("immediate_data", x.immediate_data, y.immediate_data);
  num("max_outstanding_r2t", x.max_outstanding_r2t, y.max_outstanding_r2t);
  auto digest = [&](const char* key, bool p_allowed, bool p_required, bool q_allowed,
                    bool q_required) {
    const char* p = config::IscsiSettings::digest_setting(p_allowed, p_required);
    const char* q = config::IscsiSettings::digest_setting(q_allowed, q_required);
    if (std::string_view(p) != q) note(std::string("iscsi.") + key, p, q);
  };
  digest("header_digest", x.header_digest, x.require_header_digest, y.header_digest,
         y.require_header_digest);
  digest("data_digest", x.data_digest, x.require_data_digest, y.data_digest, y.require_data_digest);
  num("default_time2wait", x.default_time2wait, y.default_time2wait);
  num("default_time2retain", x.default_time2retain, y.default_time2retain);
  num("queue_depth", x.queue_depth, y.queue_depth);
  num("nop_interval", x.nop_interval_seconds, y.nop_interval_seconds);
  num("nop_timeout", x.nop_timeout_seconds, y.nop_timeout_seconds);
  num("login_timeout", x.login_timeout_seconds, y.login_timeout_seconds);
}

void lun_differences(const config::Target& t, const config::Lun& a, const config::Lun& b,
                     ChangePlan& plan) {
  const std::string name = lun_name(t.name, b.number);
  ChangeStep step{};
  step.target = t.name;
  step.lun = b.number;
  step.target_cfg = t;
  step.lun_cfg = b;
  if (!same_backing(a, b)) {
    step.kind = Kind::replace_lun;
    step.weakens_ack = ack_weakening(a, b);
    step.strengthens_ack = ack_strengthening(a, b);
    std::string what = a.path == b.path ? "" : a.path + " -> " + b.path;
    auto also = [&what](const std::string& s) { what += (what.empty() ? "" : ", ") + s; };
    if (!step.weakens_ack.empty()) also(step.weakens_ack);
    if (step.strengthens_ack) also("write_ack writeback -> writethrough");
    if (a.copies != b.copies || a.ack_quorum != b.ack_quorum ||
        a.on_quorum_loss != b.on_quorum_loss || a.quorum_wait_seconds != b.quorum_wait_seconds ||
        a.failure_domain != b.failure_domain || a.resync_region_size != b.resync_region_size ||
        a.resync_rate != b.resync_rate)
      also("its copies or mirror settings");
    if (what.empty()) also("block size, read-only, direct I/O, serial or provisioning");
    step.description = name + ": backing changed (" + what +
                       "): replaced; its sessions stay logged in and their next commands "
                       "go to the new backing";
    plan.steps.push_back(step);
    return;
  }
  if (a.size != b.size && b.size) {
    if (!a.size || *b.size > *a.size) {
      step.kind = Kind::resize_lun;
      step.description = name + ": size -> " + std::to_string(*b.size) + " bytes";
      plan.steps.push_back(step);
    } else {
      plan.needs_restart.push_back(name + ": size " + std::to_string(*a.size) + " -> " +
                                   std::to_string(*b.size) +
                                   " bytes: shrinking is not supported; the LUN keeps its size");
    }
  }
  if (a.allowed_initiators != b.allowed_initiators) {
    step.kind = Kind::set_lun_initiators;
    step.description = name + ": allowed_initiators -> " + list(b.allowed_initiators);
    plan.steps.push_back(step);
  }
}

}  // namespace

std::string ack_weakening(const config::Lun& from, const config::Lun& to) {
  if (from.write_ack == config::WriteAckPolicy::writethrough &&
      to.write_ack == config::WriteAckPolicy::writeback) {
    return std::string("write_ack ") + storage::to_string(from.write_ack) + " -> " +
           storage::to_string(to.write_ack);
  }
  return "";
}

bool ack_strengthening(const config::Lun& from, const config::Lun& to) {
  return from.write_ack == config::WriteAckPolicy::writeback &&
         to.write_ack == config::WriteAckPolicy::writethrough;
}

void defer_ack_weakening(ChangePlan& plan, config::Config& next, const config::Config& running,
                         const std::set<std::string>& targets_in_use) {
  auto running_lun = [&](const std::string& target, std::uint32_t n) -> const config::Lun* {
    for (const auto& t : running.targets)
      if (t.name == target)
        for (const auto& l : t.luns)
          if (l.number == n) return &l;
    return nullptr;
  };
  std::erase_if(plan.steps, [&](const ChangeStep& s) {
    if (s.weakens_ack.empty() || !targets_in_use.contains(s.target)) return false;
    const config::Lun* old = running_lun(s.target, s.lun);
    if (old == nullptr) return false;
    for (auto& t : next.targets)
      if (t.name == s.target)
        for (auto& l : t.luns)
          if (l.number == s.lun) l = *old;
    plan.deferred.push_back(lun_name(s.target, s.lun) + ": " + s.weakens_ack +
                            " not applied while sessions use the target (the LUN stays as it "
                            "is): they attached the disk as "
                            "write-through and would send no SYNCHRONIZE CACHE or FUA, so their "
                            "acknowledged writes would sit in this host's cache. Log them out "
                            "(iscsiadm -m node -u) and reload again, or reload with --force to "
                            "apply it now (their writes are then not durable at GOOD until they "
                            "rescan or log in again)");
    return true;
  });
}

ChangePlan plan_changes(const config::Config& running, const config::Config& next) {
  ChangePlan plan;
  global_differences(running, next, plan.needs_restart);

  auto has_portal = [](const config::Config& c, const config::Portal& p) {
    return std::any_of(c.portals.begin(), c.portals.end(),
                       [&](const auto& q) { return q.to_string() == p.to_string(); });
  };
  for (const auto& p : next.portals) {
    if (has_portal(running, p)) continue;
    ChangeStep s{};
    s.kind = Kind::add_portal;
    s.portal = p;
    s.description = "portal " + p.to_string() + ": added";
    plan.steps.push_back(s);
  }

  std::map<std::string, const config::Target*> old_targets;
  for (const auto& t : running.targets) old_targets[t.name] = &t;
  std::vector<ChangeStep> removals;
  for (const auto& t : next.targets) {
    auto it = old_targets.find(t.name);
    if (it == old_targets.end()) {
      ChangeStep s{};
      s.kind = Kind::add_target;
      s.target = t.name;
      s.target_cfg = t;
      s.description =
          "target " + t.name + ": added with " + std::to_string(t.luns.size()) + " LUN(s)";
      plan.steps.push_back(s);
      continue;
    }
    const config::Target& old = *it->second;
    old_targets.erase(it);
    if (old.alias != t.alias) {
      plan.needs_restart.push_back("target " + t.name + ": alias \"" + old.alias + "\" -> \"" +
                                   t.alias + "\" (needs a restart)");
    }
    if (old.portals != t.portals) {
      plan.needs_restart.push_back("target " + t.name + ": portals changed (needs a restart)");
    }
    if (old.allowed_initiators != t.allowed_initiators) {
      ChangeStep s{};
      s.kind = Kind::set_target_initiators;
      s.target = t.name;
      s.target_cfg = t;
      s.description = "target " + t.name + ": allowed_initiators -> " + list(t.allowed_initiators) +
                      " (sessions already logged in stay)";
      plan.steps.push_back(s);
    }
    if (!same_chap(old.chap, t.chap)) {
      ChangeStep s{};
      s.kind = Kind::set_target_chap;
      s.target = t.name;
      s.target_cfg = t;
      s.description = "target " + t.name + ": CHAP settings changed (applies to new logins)";
      plan.steps.push_back(s);
    }
    std::map<std::uint32_t, const config::Lun*> old_luns;
    for (const auto& l : old.luns) old_luns[l.number] = &l;
    for (const auto& l : t.luns) {
      auto lit = old_luns.find(l.number);
      if (lit == old_luns.end()) {
        ChangeStep s{};
        s.kind = Kind::add_lun;
        s.target = t.name;
        s.lun = l.number;
        s.target_cfg = t;
        s.lun_cfg = l;
        s.description = lun_name(t.name, l.number) + ": added (" + l.path + ")";
        plan.steps.push_back(s);
        continue;
      }
      lun_differences(t, *lit->second, l, plan);
      old_luns.erase(lit);
    }
    for (const auto& [number, l] : old_luns) {
      ChangeStep s{};
      s.kind = Kind::remove_lun;
      s.target = t.name;
      s.lun = number;
      s.target_cfg = t;
      s.lun_cfg = *l;
      s.description = lun_name(t.name, number) + ": removed";
      removals.push_back(s);
    }
  }
  for (const auto& [name, t] : old_targets) {
    ChangeStep s{};
    s.kind = Kind::remove_target;
    s.target = name;
    s.target_cfg = *t;
    s.description = "target " + name + ": removed; its sessions are closed";
    removals.push_back(s);
  }
  for (const auto& p : running.portals) {
    if (has_portal(next, p)) continue;
    ChangeStep s{};
    s.kind = Kind::remove_portal;
    s.portal = p;
    s.description = "portal " + p.to_string() + ": removed (connections made through it stay)";
    removals.push_back(s);
  }
  for (auto& r : removals) plan.steps.push_back(std::move(r));
  return plan;
}

}  // namespace ringtgt::admin
