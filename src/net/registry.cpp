#include "ringtgt/net/registry.hpp"

#include <chrono>

namespace ringtgt::net {

namespace {

iscsi::ConnectionSettings settings_from(const config::Config& cfg) {
  const config::IscsiSettings& s = cfg.iscsi;
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
  c.max_unsent_output = cfg.limits.max_session_output;
  return c;
}

}  // namespace

Registry::Registry(const config::Config& cfg, LunOpener open_lun)
    : open_lun_(std::move(open_lun)),
      settings_(settings_from(cfg)),
      sessions_(cfg.limits),
      catalog_(cfg, [this](const std::string& target, const config::Lun& l) {
        return this->open_lun(target, l);
      }) {}

std::shared_ptr<scsi::LogicalUnit> Registry::open_lun(const std::string& target,
                                                      const config::Lun& l) const {
  auto lu = open_lun_(target, l);
  attach(target, l, *lu);
  return lu;
}

bool Registry::replace_waiting_lun(const std::string& target, const config::Lun& l,
                                   const scsi::LogicalUnit* waiting,
                                   std::shared_ptr<scsi::LogicalUnit> lu) {
  // lu is not shared yet: hooking it up is harmless if the catalog refuses it.
  attach(target, l, *lu);
  return catalog_.replace_waiting_lun(target, l, waiting, std::move(lu));
}

void Registry::attach(const std::string& target, const config::Lun& l,
                      scsi::LogicalUnit& lu) const {
  // The registry outlives every reactor, and so every command an LU runs.
  lu.set_copy_targets([this](std::uint64_t designator, const scsi::Nexus& nexus) {
    return find_copy_target(designator, nexus);
  });
}

std::shared_ptr<scsi::LogicalUnit> Registry::find_copy_target(std::uint64_t designator,
                                                              const scsi::Nexus& nexus) const {
  // Where the nexus's session came in: what "could log in from there" means.
  return catalog_.find_copy_target(designator, nexus, sessions_.portal_of(nexus));
}

}  // namespace ringtgt::net
