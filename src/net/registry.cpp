#include "ringtgt/net/registry.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>

#include "ringtgt/iscsi/text.hpp"
#include "ringtgt/net/socket_connection.hpp"
#include "ringtgt/net/worker.hpp"

namespace ringtgt::net {

namespace {

iscsi::ConnectionSettings settings_from(const config::IscsiSettings& s) {
  iscsi::ConnectionSettings c;
  c.limits.max_recv_data_segment_length = s.max_recv_data_segment_length;
  c.limits.max_burst_length = s.max_burst_length;
  c.limits.first_burst_length = s.first_burst_length;
  c.limits.initial_r2t = s.initial_r2t;
  c.limits.immediate_data = s.immediate_data;
  c.limits.max_outstanding_r2t = s.max_outstanding_r2t;
  c.limits.allow_header_digest = s.header_digest;
  c.limits.allow_data_digest = s.data_digest;
  c.limits.require_header_digest = s.require_header_digest;
  c.limits.require_data_digest = s.require_data_digest;
  c.limits.default_time2wait = s.default_time2wait;
  c.limits.default_time2retain = s.default_time2retain;
  c.queue_depth = s.queue_depth;
  c.nop_interval = std::chrono::seconds(s.nop_interval_seconds);
  c.nop_timeout = std::chrono::seconds(s.nop_timeout_seconds);
  c.login_timeout = std::chrono::seconds(s.login_timeout_seconds);
  return c;
}

iscsi::AuthPolicy policy_from(const config::Chap& c) {
  iscsi::AuthPolicy p;
  p.initiator = {c.user, c.secret};
  if (c.mutual()) p.target = iscsi::ChapCredentials{c.mutual_user, c.mutual_secret};
  return p;
}

std::string format_address(const std::string& host, std::uint16_t port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

}  // namespace

Registry::Registry(const config::Config& cfg, LunOpener open_lun)
    : open_lun_(std::move(open_lun)), settings_(settings_from(cfg.iscsi)), limits_(cfg.limits) {
  settings_.max_unsent_output = cfg.limits.max_session_output;
  if (cfg.discovery_chap) {
    discovery_auth_ = policy_from(*cfg.discovery_chap);
    spdlog::info("discovery: CHAP required (user {}{})", cfg.discovery_chap->user,
                 cfg.discovery_chap->mutual() ? ", mutual" : "");
  }
  auto first = std::make_shared<Snapshot>();
  first->portals = cfg.portals;
  publish(std::move(first));
  for (const auto& t : cfg.targets) add_target(t);
}

std::shared_ptr<const Registry::Snapshot> Registry::snapshot() const {
  std::lock_guard lock(snapshot_mu_);
  return snapshot_;
}

void Registry::publish(std::shared_ptr<const Snapshot> next) {
  std::lock_guard lock(snapshot_mu_);
  snapshot_ = std::move(next);
}

std::shared_ptr<iscsi::TargetEntry> Registry::entry(const std::string& target) const {
  for (const auto& t : snapshot()->targets)
    if (t->name == target) return t;
  throw std::runtime_error("no target named " + target);
}

std::shared_ptr<scsi::LogicalUnit> Registry::open_lun(const std::string& target,
                                                      const config::Lun& l) const {
  auto lu = open_lun_(target, l);
  // The registry outlives every reactor, and so every command an LU runs.
  lu->set_copy_targets([this](std::uint64_t designator, const scsi::Nexus& nexus) {
    return find_copy_target(designator, nexus);
  });
  lu->set_task_set_aborter([this, target, lun = std::uint64_t{l.number}](
                               std::vector<scsi::InitiatorPort> ports, const scsi::Task& keep,
                               std::function<void()> done) {
    abort_preempted(target, lun, std::move(ports), keep, std::move(done));
  });
  return lu;
}

void Registry::add_target(const config::Target& t,
                          std::map<std::uint32_t, std::shared_ptr<scsi::LogicalUnit>> opened) {
  auto old = snapshot();
  for (const auto& e : old->targets)
    if (e->name == t.name) throw std::runtime_error("target " + t.name + " exists already");
  auto entry = std::make_shared<iscsi::TargetEntry>();
  entry->name = t.name;
  entry->alias = t.alias;
  entry->set_allowed_initiators(t.allowed_initiators);
  auto map = std::make_shared<scsi::LunMap>();
  for (const auto& l : t.luns) {
    auto it = opened.find(l.number);
    map->add(it != opened.end() ? it->second : open_lun(t.name, l));
    if (!l.allowed_initiators.empty()) {
      map->set_allowed_initiators(l.number, l.allowed_initiators);
      std::string who;
      for (const auto& i : l.allowed_initiators) who += (who.empty() ? "" : ", ") + i;
      spdlog::info("target {} LUN {}: visible only to {}", t.name, l.number, who);
    }
  }
  entry->set_luns(std::move(map));
  auto next = std::make_shared<Snapshot>(*old);
  if (t.chap) {
    next->target_auth.insert_or_assign(t.name, policy_from(*t.chap));
    spdlog::info("target {}: CHAP required (user {}{})", t.name, t.chap->user,
                 t.chap->mutual() ? ", mutual" : "");
  }
  if (!t.portals.empty()) {
    next->target_portals.insert_or_assign(t.name, t.portals);
    std::string where;
    for (const auto& p : t.portals) where += (where.empty() ? "" : ", ") + p.to_string();
    spdlog::info("target {}: offered only on {}", t.name, where);
  }
  next->targets.push_back(std::move(entry));
  next->counters.push_back(std::make_shared<metrics::TargetCounters>());
  publish(std::move(next));
}

void Registry::remove_target(const std::string& name) {
  auto old = snapshot();
  auto next = std::make_shared<Snapshot>(*old);
  next->targets.clear();
  next->counters.clear();
  for (std::size_t i = 0; i < old->targets.size(); ++i) {
    if (old->targets[i]->name == name) continue;
    next->targets.push_back(old->targets[i]);
    next->counters.push_back(old->counters[i]);
  }
  if (next->targets.size() == old->targets.size())
    throw std::runtime_error("no target named " + name);
  next->target_auth.erase(name);
  next->target_portals.erase(name);
  publish(std::move(next));
  spdlog::info("target {}: removed (its sessions keep running until they log out)", name);
}

void Registry::set_target_initiators(const std::string& target,
                                     std::vector<std::string> initiators) {
  entry(target)->set_allowed_initiators(std::move(initiators));
}

void Registry::set_target_chap(const std::string& target, const std::optional<config::Chap>& chap) {
  entry(target);
  auto next = std::make_shared<Snapshot>(*snapshot());
  if (chap) {
    next->target_auth.insert_or_assign(target, policy_from(*chap));
  } else {
    next->target_auth.erase(target);
  }
  publish(std::move(next));
}

void Registry::put_lun(const std::string& target, const config::Lun& l,
                       std::shared_ptr<scsi::LogicalUnit> lu) {
  auto e = entry(target);
  auto map = std::make_shared<scsi::LunMap>(*e->luns());
  map->remove(l.number);
  map->add(std::move(lu));
  map->set_allowed_initiators(l.number, l.allowed_initiators);
  e->set_luns(std::move(map));
}

void Registry::remove_lun(const std::string& target, std::uint32_t lun) {
  auto e = entry(target);
  auto map = std::make_shared<scsi::LunMap>(*e->luns());
  if (!map->find(lun))
    throw std::runtime_error("target " + target + " has no LUN " + std::to_string(lun));
  map->remove(lun);
  e->set_luns(std::move(map));
  spdlog::info("target {} LUN {}: removed", target, lun);
}

void Registry::set_lun_initiators(const std::string& target, std::uint32_t lun,
                                  std::vector<std::string> initiators) {
  auto e = entry(target);
  auto map = std::make_shared<scsi::LunMap>(*e->luns());
  map->set_allowed_initiators(lun, std::move(initiators));
  e->set_luns(std::move(map));
}

void Registry::resize_lun(const std::string& target, std::uint32_t lun, std::uint64_t bytes) {
  auto lu = entry(target)->luns()->find(lun);
  if (!lu) throw std::runtime_error("target " + target + " has no LUN " + std::to_string(lun));
  const std::uint32_t bs = lu->params().block_size;
  if (bytes % bs != 0) {
    throw std::runtime_error("size " + std::to_string(bytes) +
                             " is not a multiple of the block size " + std::to_string(bs));
  }
  lu->backend().grow_to(bytes);
  lu->set_block_count(bytes / bs);
  spdlog::info("target {} LUN {}: resized to {} bytes ({} blocks)", target, lun, bytes, bytes / bs);
}

void Registry::set_portals(std::vector<config::Portal> portals) {
  auto next = std::make_shared<Snapshot>(*snapshot());
  next->portals = std::move(portals);
  publish(std::move(next));
}

std::vector<std::shared_ptr<iscsi::TargetEntry>> Registry::targets() const {
  return snapshot()->targets;
}

std::shared_ptr<const iscsi::TargetEntry> Registry::find_target(std::string_view name) const {
  auto snap = snapshot();
  for (const auto& t : snap->targets)
    if (t->name == name) return t;
  return nullptr;
}

namespace {
// A portal matches a connection's local address when they are the same, or
// the portal is a wildcard on the same port.
bool portal_matches(const config::Portal& p, const std::string& local_address) {
  if (p.to_string() == local_address) return true;
  bool wildcard = p.host == "0.0.0.0" || p.host == "::";
  std::string port = ":" + std::to_string(p.port);
  return wildcard && local_address.size() > port.size() && local_address.ends_with(port);
}
}  // namespace

bool Registry::offered_on(std::string_view target, const std::string& local_address) const {
  auto snap = snapshot();
  auto it = snap->target_portals.find(target);
  if (it == snap->target_portals.end()) return true;
  for (const auto& p : it->second)
    if (portal_matches(p, local_address)) return true;
  return false;
}

void Registry::append_send_targets(std::string_view initiator, std::string_view which,
                                   const std::string& local_address, std::string& out) const {
  auto snap = snapshot();
  for (const auto& t : snap->targets) {
    if (which != "All" && which != t->name) continue;
    if (!t->allows(initiator)) continue;
    if (!offered_on(t->name, local_address)) continue;
    auto limited = snap->target_portals.find(t->name);
    const auto& portals = limited != snap->target_portals.end() ? limited->second : snap->portals;
    iscsi::append_key(out, "TargetName", t->name);
    for (const auto& p : portals) {
      bool wildcard = p.host == "0.0.0.0" || p.host == "::";
      std::string addr = wildcard ? local_address : format_address(p.host, p.port);
      iscsi::append_key(out, "TargetAddress", addr + ",1");
    }
  }
}

std::shared_ptr<metrics::TargetCounters> Registry::target_counters(std::string_view name) const {
  auto snap = snapshot();
  for (std::size_t i = 0; i < snap->targets.size(); ++i)
    if (snap->targets[i]->name == name) return snap->counters[i];
  return nullptr;
}

std::vector<std::shared_ptr<metrics::TargetCounters>> Registry::all_target_counters() const {
  return snapshot()->counters;
}

std::optional<iscsi::AuthPolicy> Registry::auth_policy(iscsi::SessionType type,
                                                       std::string_view target) const {
  if (type == iscsi::SessionType::discovery) return discovery_auth_;
  auto snap = snapshot();
  auto it = snap->target_auth.find(target);
  if (it == snap->target_auth.end()) return std::nullopt;
  return it->second;
}

std::uint16_t Registry::session_started(const SessionId& id, Worker* worker,
                                        std::weak_ptr<SocketConnection> conn,
                                        std::string local_address) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  // [limits]: a reinstatement replaces a session and is always let in.
  if (it == sessions_.end()) {
    if (sessions_.size() >= limits_.max_sessions) {
      spdlog::warn("login refused: initiator {}: {} sessions open (limits.max_sessions)",
                   id.initiator, sessions_.size());
      return 0;
    }
    std::size_t mine = 0;
    for (auto s = sessions_.lower_bound(SessionId{id.initiator, 0, {}});
         s != sessions_.end() && s->first.initiator == id.initiator; ++s)
      ++mine;
    if (mine >= limits_.max_sessions_per_initiator) {
      spdlog::warn(
          "login refused: initiator {}: {} sessions of it open (limits.max_sessions_per_initiator)",
          id.initiator, mine);
      return 0;
    }
  }
  std::uint16_t tsih = next_tsih_++;
  if (next_tsih_ == 0) next_tsih_ = 1;
  if (it != sessions_.end()) {
    spdlog::info(
        "session reinstatement: initiator {} ISID {:012x} target {}: closing the old session "
        "(tsih {})",
        id.initiator, id.isid, id.target, it->second.tsih);
    auto old = it->second.conn;
    it->second.worker->reactor().post([old] {
      if (auto c = old.lock()) c->close("session reinstated by a new login");
    });
    retiring_.emplace(id, it->second);
  }
  sessions_[id] = SessionRef{tsih, worker, std::move(conn), std::move(local_address)};
  return tsih;
}

void Registry::after_reinstated(const SessionId& id, std::uint16_t tsih, Worker* worker,
                                std::function<void()> ready) {
  {
    std::lock_guard lock(mu_);
    if (const auto n = retiring_.count(id); n != 0) {
      spdlog::info(
          "login of initiator {} ISID {:012x} to target {} waits until the {} session(s) it "
          "reinstates have no command left in the backend",
          id.initiator, id.isid, id.target, n);
      waiting_.emplace(id, Waiter{tsih, worker, std::move(ready)});
      return;
    }
  }
  ready();
}

void Registry::release_waiters(const SessionId& id) {
  if (retiring_.contains(id)) return;
  auto [first, last] = waiting_.equal_range(id);
  for (auto w = first; w != last; ++w) w->second.worker->reactor().post(std::move(w->second.ready));
  waiting_.erase(first, last);
}

void Registry::session_ended(const SessionId& id, std::uint16_t tsih) {
  std::lock_guard lock(mu_);
  // A login that waited and went away waits no more.
  std::erase_if(waiting_, [&](const auto& w) { return w.first == id && w.second.tsih == tsih; });
  auto it = sessions_.find(id);
  if (it != sessions_.end() && it->second.tsih == tsih) {
    sessions_.erase(it);
    return;
  }
  auto [first, last] = retiring_.equal_range(id);
  for (auto r = first; r != last; ++r) {
    if (r->second.tsih == tsih) {
      retiring_.erase(r);
      release_waiters(id);
      return;
    }
  }
}

void Registry::abort_preempted(const std::string& target, std::uint64_t lun,
                               std::vector<scsi::InitiatorPort> ports, const scsi::Task& keep,
                               std::function<void()> done) const {
  auto preempted = [&ports](const SessionId& id, const SessionRef&) {
    return std::any_of(ports.begin(), ports.end(), [&id](const scsi::InitiatorPort& p) {
      return p.initiator_name == id.initiator && p.isid == id.isid;
    });
  };
  abort_tasks_in(target, lun, &keep, preempted, std::move(done));
}

void Registry::abort_tasks_elsewhere(const std::string& target, std::optional<std::uint64_t> lun,
                                     const SocketConnection* except,
                                     std::function<void()> done) const {
  auto other = [except](const SessionId&, const SessionRef& ref) {
    return ref.conn.lock().get() != except;
  };
  abort_tasks_in(target, lun, nullptr, other, std::move(done));
}

void Registry::abort_tasks_in(const std::string& target, std::optional<std::uint64_t> lun,
                              const scsi::Task* keep,
                              const std::function<bool(const SessionId&, const SessionRef&)>& asked,
                              std::function<void()> done) const {
  // The command or task management request that asks completes on its own
  // worker, whose reactor is the one running this.
  auto* home = dynamic_cast<reactor::Reactor*>(reactor::IoEngine::current());
  if (home == nullptr) {
    spdlog::error("target {}: tasks of other sessions not aborted: not called on a worker", target);
    return done();
  }
  // One answer from every session asked, plus one for this function, so
  // that the last of them (on whichever worker) posts the completion home.
  struct Pending {
    std::atomic<std::size_t> left{1};
    reactor::Reactor* home;
    std::function<void()> done;
  };
  auto pending = std::make_shared<Pending>();
  pending->home = home;
  pending->done = std::move(done);
  auto answer = [pending] {
    if (pending->left.fetch_sub(1, std::memory_order_acq_rel) == 1)
      pending->home->post(std::move(pending->done));
  };
  auto ask = [&](const SessionRef& ref) {
    pending->left.fetch_add(1, std::memory_order_relaxed);
    ref.worker->reactor().post([conn = ref.conn, target, lun, keep, answer] {
      // A session gone since has no task left to abort.
      if (auto c = conn.lock()) return c->abort_tasks(target, lun, keep, answer);
      answer();
    });
  };
  {
    // Posting under mu_ keeps every asked worker running until it answers:
    // a worker stops only after its last session ended, which takes mu_.
    std::lock_guard lock(mu_);
    for (const auto& [key, ref] : sessions_)
      if (asked(key, ref)) ask(ref);
    for (const auto& [key, ref] : retiring_)
      if (asked(key, ref)) ask(ref);
  }
  answer();
}

namespace {
// A LUN of map whose VPD page 83h designator is `designator` and that nexus sees.
std::shared_ptr<scsi::LogicalUnit> visible_lu(const scsi::LunMap& map, std::uint64_t designator,
                                              const scsi::Nexus& nexus) {
  for (const std::uint64_t lun : map.luns()) {
    auto lu = map.find(lun);
    if (lu && scsi::naa_designator(lu->params()) == designator && map.visible(lun, &nexus)) {
      return lu;
    }
  }
  return nullptr;
}
}  // namespace

std::shared_ptr<scsi::LogicalUnit> Registry::find_copy_target(std::uint64_t designator,
                                                              const scsi::Nexus& nexus) const {
  auto snap = snapshot();
  // Where the nexus's session came in: what "could log in from there" means.
  std::optional<std::string> portal;
  {
    std::lock_guard lock(mu_);
    auto it =
        sessions_.find(SessionId{nexus.initiator_name, nexus.session_id >> 16, nexus.target_name});
    if (it != sessions_.end() && it->second.tsih == (nexus.session_id & 0xffff)) {
      portal = it->second.local_address;
    }
  }
  auto own_auth = snap->target_auth.find(nexus.target_name);
  for (const auto& t : snap->targets) {
    if (t->name != nexus.target_name) {
      if (!t->allows(nexus.initiator_name)) continue;
      if (auto auth = snap->target_auth.find(t->name); auth != snap->target_auth.end()) {
        // The secret it proved at login is the only one we know it has.
        if (own_auth == snap->target_auth.end()) continue;
        const iscsi::ChapCredentials& mine = own_auth->second.initiator;
        const iscsi::ChapCredentials& theirs = auth->second.initiator;
        if (mine.user != theirs.user || mine.secret != theirs.secret) continue;
      }
      if (portal ? !offered_on(t->name, *portal) : snap->target_portals.contains(t->name)) continue;
    }
    if (auto map = t->luns()) {
      if (auto lu = visible_lu(*map, designator, nexus)) return lu;
    }
  }
  return nullptr;
}

std::size_t Registry::session_count() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

}  // namespace ringtgt::net
