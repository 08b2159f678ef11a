#include "ringtgt/net/registry.hpp"

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "ringtgt/iscsi/text.hpp"
#include "ringtgt/net/socket_connection.hpp"
#include "ringtgt/net/worker.hpp"

#include "ringtgt/storage/file_backend.hpp"

namespace ringtgt::net {

std::uint64_t lun_naa(const std::string& target, std::uint32_t lun) {
  // FNV-1a over the names: stable across restarts and builds.
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 0x100000001b3ull;
  };
  for (unsigned char c : target) mix(c);
  mix(0);
  for (int i = 0; i < 4; ++i) mix(static_cast<unsigned char>(lun >> (8 * i)));
  return h;
}

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

Registry::Registry(const config::Config& cfg)
    : portals_(cfg.portals), settings_(settings_from(cfg.iscsi)) {
  const unsigned workers = resolve_worker_count(cfg.workers);
  limits_ = cfg.limits;
  for (const auto& t : cfg.targets) {
    if (t.portals.empty()) continue;
    target_portals_.emplace(t.name, t.portals);
    std::string where;
    for (const auto& p : t.portals) where += (where.empty() ? "" : ", ") + p.to_string();
    spdlog::info("target {}: offered only on {}", t.name, where);
  }
  if (cfg.discovery_chap) {
    discovery_auth_ = policy_from(*cfg.discovery_chap);
    spdlog::info("discovery: CHAP required (user {}{})", cfg.discovery_chap->user,
                 cfg.discovery_chap->mutual() ? ", mutual" : "");
  }
  for (const auto& t : cfg.targets) {
    if (t.chap) {
      target_auth_.emplace(t.name, policy_from(*t.chap));
      spdlog::info("target {}: CHAP required (user {}{})", t.name, t.chap->user,
                   t.chap->mutual() ? ", mutual" : "");
    }
    auto entry = std::make_shared<iscsi::TargetEntry>();
    entry->name = t.name;
    entry->alias = t.alias;
    entry->allowed_initiators = t.allowed_initiators;
    entry->luns = std::make_shared<scsi::LunMap>();
    for (const auto& l : t.luns) {
      storage::FileBackendOptions o;
      o.path = l.path;
      o.create_size = l.size;
      o.read_only = l.read_only;
      o.direct_io = l.direct_io;
      o.policy = l.write_ack == config::WriteAck::writeback ? storage::WriteAckPolicy::writeback
                                                            : storage::WriteAckPolicy::writethrough;
      std::unique_ptr<storage::Backend> backend;
      try {
        backend = std::make_unique<storage::FileBackend>(o);
      } catch (const std::exception& e) {
        throw std::runtime_error("target " + t.name + " LUN " + std::to_string(l.number) + ": " +
                                 e.what());
      }
      if (backend->size_bytes() % l.block_size != 0) {
        throw std::runtime_error("target " + t.name + " LUN " + std::to_string(l.number) + ": " +
                                 l.path + " is " + std::to_string(backend->size_bytes()) +
                                 " bytes, not a multiple of the block size " +
                                 std::to_string(l.block_size));
      }
      scsi::LunParams p;
      p.block_size = l.block_size;
      p.read_only = l.read_only;
      p.naa = lun_naa(t.name, l.number);
      p.serial = l.serial.empty() ? fmt::format("{:016x}", p.naa) : l.serial;
      p.device_name = t.name + ",lun," + std::to_string(l.number);
      p.spc2_reservations = true;  // released on nexus loss and resets by the transport
      if (l.provisioning == config::Provisioning::thin && !backend->can_unmap()) {
        throw std::runtime_error("target " + t.name + " LUN " + std::to_string(l.number) +
                                 ": provisioning = \"thin\" but " + l.path +
                                 " cannot deallocate (no hole punching / WRITE ZEROES); use "
                                 "provisioning = \"full\"");
      }
      p.thin_provisioned =
          l.provisioning ? *l.provisioning == config::Provisioning::thin : backend->can_unmap();
      // Unit attentions and persistent reservations: a new nexus hears 29h/00h,
      // and APTPL state lives in state_dir, one file per LUN named by its NAA.
      p.power_on_unit_attention = true;
      p.pr_state_path = fmt::format("{}/pr-{:016x}.state", cfg.state_dir, p.naa);
      spdlog::info("target {} LUN {}: {} ({} bytes, {} byte blocks, {}, {} provisioned{})", t.name,
                   l.number, backend->describe(), backend->size_bytes(), l.block_size,
                   storage::to_string(backend->ack_policy()), p.thin_provisioned ? "thin" : "fully",
                   l.read_only ? ", read-only" : "");
      auto lu = std::make_shared<scsi::LogicalUnit>(l.number, p, std::move(backend));
      lu->set_stats(std::make_shared<metrics::LunStats>(workers));
      entry->luns->add(std::move(lu));
      if (!l.allowed_initiators.empty()) {
        entry->luns->set_allowed_initiators(l.number, l.allowed_initiators);
        std::string who;
        for (const auto& i : l.allowed_initiators) who += (who.empty() ? "" : ", ") + i;
        spdlog::info("target {} LUN {}: visible only to {}", t.name, l.number, who);
      }
    }
    targets_.push_back(std::move(entry));
    target_counters_.push_back(std::make_shared<metrics::TargetCounters>());
  }
}

std::shared_ptr<const iscsi::TargetEntry> Registry::find_target(std::string_view name) const {
  for (const auto& t : targets_)
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
  auto it = target_portals_.find(target);
  if (it == target_portals_.end()) return true;
  for (const auto& p : it->second)
    if (portal_matches(p, local_address)) return true;
  return false;
}

void Registry::append_send_targets(std::string_view initiator, std::string_view which,
                                   const std::string& local_address, std::string& out) const {
  for (const auto& t : targets_) {
    if (which != "All" && which != t->name) continue;
    if (!t->allows(initiator)) continue;
    if (!offered_on(t->name, local_address)) continue;
    auto limited = target_portals_.find(t->name);
    const auto& portals = limited != target_portals_.end() ? limited->second : portals_;
    iscsi::append_key(out, "TargetName", t->name);
    for (const auto& p : portals) {
      bool wildcard = p.host == "0.0.0.0" || p.host == "::";
      std::string addr = wildcard ? local_address : format_address(p.host, p.port);
      iscsi::append_key(out, "TargetAddress", addr + ",1");
    }
  }
}

std::shared_ptr<metrics::TargetCounters> Registry::target_counters(std::string_view name) const {
  for (std::size_t i = 0; i < targets_.size(); ++i)
    if (targets_[i]->name == name) return target_counters_[i];
  return nullptr;
}

std::optional<iscsi::AuthPolicy> Registry::auth_policy(iscsi::SessionType type,
                                                       std::string_view target) const {
  if (type == iscsi::SessionType::discovery) return discovery_auth_;
  auto it = target_auth_.find(target);
  if (it == target_auth_.end()) return std::nullopt;
  return it->second;
}

std::uint16_t Registry::session_started(const std::string& initiator, std::uint64_t isid,
                                        Worker* worker, std::weak_ptr<SocketConnection> conn) {
  std::lock_guard lock(mu_);
  auto key = std::make_pair(initiator, isid);
  auto it = sessions_.find(key);
  // [limits]: a reinstatement replaces a session and is always let in.
  if (it == sessions_.end()) {
    if (sessions_.size() >= limits_.max_sessions) {
      spdlog::warn("login refused: initiator {}: {} sessions open (limits.max_sessions)", initiator,
                   sessions_.size());
      return 0;
    }
    std::size_t mine = 0;
    for (auto s = sessions_.lower_bound({initiator, 0});
         s != sessions_.end() && s->first.first == initiator; ++s)
      ++mine;
    if (mine >= limits_.max_sessions_per_initiator) {
      spdlog::warn(
          "login refused: initiator {}: {} sessions of it open (limits.max_sessions_per_initiator)",
          initiator, mine);
      return 0;
    }
  }
  std::uint16_t tsih = next_tsih_++;
  if (next_tsih_ == 0) next_tsih_ = 1;
  if (it != sessions_.end()) {
    spdlog::info(
        "session reinstatement: initiator {} ISID {:012x}: closing the old session (tsih {})",
        initiator, isid, it->second.tsih);
    auto old = it->second.conn;
    it->second.worker->reactor().post([old] {
      if (auto c = old.lock()) c->close("session reinstated by a new login");
    });
  }
  sessions_[key] = SessionRef{tsih, worker, std::move(conn)};
  return tsih;
}

void Registry::session_ended(const std::string& initiator, std::uint64_t isid, std::uint16_t tsih) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(std::make_pair(initiator, isid));
  if (it != sessions_.end() && it->second.tsih == tsih) sessions_.erase(it);
}

std::size_t Registry::session_count() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

}  // namespace ringtgt::net
