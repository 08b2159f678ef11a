#include "ringtgt/net/target_catalog.hpp"

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "ringtgt/iscsi/text.hpp"

namespace ringtgt::net {

namespace {

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

std::string joined(const std::vector<std::string>& names) {
  std::string all;
  for (const auto& n : names) all += (all.empty() ? "" : ", ") + n;
  return all;
}

bool is_wildcard(const config::Portal& p) {
  return p.host == "0.0.0.0" || p.host == "::";
}

// A portal matches a connection's local address when they are the same, or
// the portal is a wildcard on the same port.
bool portal_matches(const config::Portal& p, const std::string& local_address) {
  if (p.to_string() == local_address) return true;
  std::string port = ":" + std::to_string(p.port);
  return is_wildcard(p) && local_address.size() > port.size() && local_address.ends_with(port);
}

// Whether target is offered on the portal at local_address in the portals of `limited`
// (target.portals by target; a target not there is offered on every portal).
bool offered_in(const std::map<std::string, std::vector<config::Portal>, std::less<>>& limited,
                std::string_view target, const std::string& local_address) {
  auto it = limited.find(target);
  if (it == limited.end()) return true;
  for (const auto& p : it->second)
    if (portal_matches(p, local_address)) return true;
  return false;
}

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

TargetCatalog::TargetCatalog(const config::Config& cfg, LunOpener open_lun)
    : open_lun_(std::move(open_lun)) {
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

std::shared_ptr<const TargetCatalog::Snapshot> TargetCatalog::snapshot() const {
  std::lock_guard lock(snapshot_mu_);
  return snapshot_;
}

void TargetCatalog::publish(std::shared_ptr<const Snapshot> next) {
  std::lock_guard lock(snapshot_mu_);
  snapshot_ = std::move(next);
}

std::shared_ptr<iscsi::TargetEntry> TargetCatalog::entry(const std::string& target) const {
  for (const auto& t : snapshot()->targets)
    if (t->name == target) return t;
  throw std::runtime_error("no target named " + target);
}

// ---------------------------------------------------------------- reading

std::vector<std::shared_ptr<iscsi::TargetEntry>> TargetCatalog::targets() const {
  return snapshot()->targets;
}

std::shared_ptr<const iscsi::TargetEntry> TargetCatalog::find_target(std::string_view name) const {
  auto snap = snapshot();
  for (const auto& t : snap->targets)
    if (t->name == name) return t;
  return nullptr;
}

bool TargetCatalog::offered_on(std::string_view target, const std::string& local_address) const {
  return offered_in(snapshot()->target_portals, target, local_address);
}

void TargetCatalog::append_send_targets(std::string_view initiator, std::string_view which,
                                        const std::string& local_address, std::string& out) const {
  auto snap = snapshot();
  for (const auto& t : snap->targets) {
    if (which != "All" && which != t->name) continue;
    if (!t->allows(initiator)) continue;
    if (!offered_in(snap->target_portals, t->name, local_address)) continue;
    auto limited = snap->target_portals.find(t->name);
    const auto& portals = limited != snap->target_portals.end() ? limited->second : snap->portals;
    iscsi::append_key(out, "TargetName", t->name);
    for (const auto& p : portals) {
      // A wildcard portal is reached at the address the initiator used.
      std::string addr = is_wildcard(p) ? local_address : format_address(p.host, p.port);
      iscsi::append_key(out, "TargetAddress", addr + ",1");
    }
  }
}

std::optional<iscsi::AuthPolicy> TargetCatalog::auth_policy(iscsi::SessionType type,
                                                            std::string_view target) const {
  if (type == iscsi::SessionType::discovery) return discovery_auth_;
  auto snap = snapshot();
  auto it = snap->target_auth.find(target);
  if (it == snap->target_auth.end()) return std::nullopt;
  return it->second;
}

std::shared_ptr<metrics::TargetCounters> TargetCatalog::target_counters(
    std::string_view name) const {
  auto snap = snapshot();
  for (std::size_t i = 0; i < snap->targets.size(); ++i)
    if (snap->targets[i]->name == name) return snap->counters[i];
  return nullptr;
}

std::vector<std::shared_ptr<metrics::TargetCounters>> TargetCatalog::all_target_counters() const {
  return snapshot()->counters;
}

bool TargetCatalog::could_log_in(const Snapshot& snap, const iscsi::TargetEntry& t,
                                 const scsi::Nexus& nexus,
                                 const std::optional<std::string>& portal) const {
  if (!t.allows(nexus.initiator_name)) return false;
  if (auto auth = snap.target_auth.find(t.name); auth != snap.target_auth.end()) {
    // The secret it proved at login is the only one we know it has.
    auto own_auth = snap.target_auth.find(nexus.target_name);
    if (own_auth == snap.target_auth.end()) return false;
    const iscsi::ChapCredentials& mine = own_auth->second.initiator;
    const iscsi::ChapCredentials& theirs = auth->second.initiator;
    if (mine.user != theirs.user || mine.secret != theirs.secret) return false;
  }
  if (portal) return offered_in(snap.target_portals, t.name, *portal);
  return !snap.target_portals.contains(t.name);
}

std::shared_ptr<scsi::LogicalUnit> TargetCatalog::find_copy_target(
    std::uint64_t designator, const scsi::Nexus& nexus,
    const std::optional<std::string>& portal) const {
  auto snap = snapshot();
  for (const auto& t : snap->targets) {
    if (t->name != nexus.target_name && !could_log_in(*snap, *t, nexus, portal)) continue;
    if (auto map = t->luns()) {
      if (auto lu = visible_lu(*map, designator, nexus)) return lu;
    }
  }
  return nullptr;
}

// ---------------------------------------------------------------- targets

std::shared_ptr<scsi::LunMap> TargetCatalog::first_luns(
    const config::Target& t, std::map<std::uint32_t, std::shared_ptr<scsi::LogicalUnit>>& opened) {
  auto map = std::make_shared<scsi::LunMap>();
  for (const auto& l : t.luns) {
    auto it = opened.find(l.number);
    map->add(it != opened.end() ? it->second : open_lun_(t.name, l));
    if (!l.allowed_initiators.empty()) {
      map->set_allowed_initiators(l.number, l.allowed_initiators);
      spdlog::info("target {} LUN {}: visible only to {}", t.name, l.number,
                   joined(l.allowed_initiators));
    }
  }
  return map;
}

void TargetCatalog::add_target(const config::Target& t,
                               std::map<std::uint32_t, std::shared_ptr<scsi::LogicalUnit>> opened) {
  auto old = snapshot();
  for (const auto& e : old->targets)
    if (e->name == t.name) throw std::runtime_error("target " + t.name + " exists already");
  auto entry = std::make_shared<iscsi::TargetEntry>();
  entry->name = t.name;
  entry->alias = t.alias;
  entry->set_allowed_initiators(t.allowed_initiators);
  entry->set_luns(first_luns(t, opened));
  auto next = std::make_shared<Snapshot>(*old);
  if (t.chap) {
    next->target_auth.insert_or_assign(t.name, policy_from(*t.chap));
    spdlog::info("target {}: CHAP required (user {}{})", t.name, t.chap->user,
                 t.chap->mutual() ? ", mutual" : "");
  }
  if (!t.portals.empty()) {
    next->target_portals.insert_or_assign(t.name, t.portals);
    std::vector<std::string> where;
    for (const auto& p : t.portals) where.push_back(p.to_string());
    spdlog::info("target {}: offered only on {}", t.name, joined(where));
  }
  next->targets.push_back(std::move(entry));
  next->counters.push_back(std::make_shared<metrics::TargetCounters>());
  publish(std::move(next));
}

void TargetCatalog::remove_target(const std::string& name) {
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

void TargetCatalog::set_target_initiators(const std::string& target,
                                          std::vector<std::string> initiators) {
  entry(target)->set_allowed_initiators(std::move(initiators));
}

void TargetCatalog::set_target_chap(const std::string& target,
                                    const std::optional<config::Chap>& chap) {
  entry(target);  // throws for an unknown target
  auto next = std::make_shared<Snapshot>(*snapshot());
  if (chap) {
    next->target_auth.insert_or_assign(target, policy_from(*chap));
  } else {
    next->target_auth.erase(target);
  }
  publish(std::move(next));
}

void TargetCatalog::set_portals(std::vector<config::Portal> portals) {
  auto next = std::make_shared<Snapshot>(*snapshot());
  next->portals = std::move(portals);
  publish(std::move(next));
}

// ---------------------------------------------------------------- LUNs
// A shared LunMap is never changed: each change copies the map, changes the
// copy and publishes it (iscsi::TargetEntry::set_luns).

bool TargetCatalog::replace_waiting_lun(const std::string& target, const config::Lun& l,
                                        const scsi::LogicalUnit* waiting,
                                        std::shared_ptr<scsi::LogicalUnit> lu) {
  std::shared_ptr<iscsi::TargetEntry> e;
  for (const auto& t : snapshot()->targets)
    if (t->name == target) e = t;
  if (!e || e->luns()->find(l.number).get() != waiting) return false;
  auto map = std::make_shared<scsi::LunMap>(*e->luns());
  // Masking set live meanwhile (lun.set) holds.
  auto initiators = map->allowed_initiators(l.number);
  map->remove(l.number);
  map->add(std::move(lu));
  map->set_allowed_initiators(l.number, std::move(initiators));
  e->set_luns(std::move(map));
  return true;
}

void TargetCatalog::put_lun(const std::string& target, const config::Lun& l,
                            std::shared_ptr<scsi::LogicalUnit> lu) {
  auto e = entry(target);
  auto map = std::make_shared<scsi::LunMap>(*e->luns());
  map->remove(l.number);
  map->add(std::move(lu));
  map->set_allowed_initiators(l.number, l.allowed_initiators);
  e->set_luns(std::move(map));
}

void TargetCatalog::remove_lun(const std::string& target, std::uint32_t lun) {
  auto e = entry(target);
  auto map = std::make_shared<scsi::LunMap>(*e->luns());
  if (!map->find(lun))
    throw std::runtime_error("target " + target + " has no LUN " + std::to_string(lun));
  map->remove(lun);
  e->set_luns(std::move(map));
  spdlog::info("target {} LUN {}: removed", target, lun);
}

void TargetCatalog::set_lun_initiators(const std::string& target, std::uint32_t lun,
                                       std::vector<std::string> initiators) {
  auto e = entry(target);
  auto map = std::make_shared<scsi::LunMap>(*e->luns());
  map->set_allowed_initiators(lun, std::move(initiators));
  e->set_luns(std::move(map));
}

void TargetCatalog::resize_lun(const std::string& target, std::uint32_t lun, std::uint64_t bytes) {
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

}  // namespace ringtgt::net
