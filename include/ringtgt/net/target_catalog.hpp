// The targets being served: their LUN maps, portals, initiator lists and CHAP.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ringtgt/config/config.hpp"
#include "ringtgt/iscsi/connection.hpp"
#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/scsi/logical_unit.hpp"

namespace ringtgt::net {

// Builds the LogicalUnit of a LUN of a target from its config, not yet served; throws
// std::runtime_error naming the target and LUN. The daemon gives the registry the LUN
// factory's (lun::LunFactory), so net serves LUs without knowing their backends.
using LunOpener = std::function<std::shared_ptr<scsi::LogicalUnit>(const std::string& target,
                                                                   const config::Lun& l)>;

// An immutable snapshot that the control plane replaces whole (live changes,
// reload) while reactors read it at login and discovery; sessions keep their
// TargetEntry alive through its shared_ptr. Readers: any thread. Changes:
// the control-plane thread only.
class TargetCatalog {
 public:
  // Serves every target of cfg, opening their LUNs with open_lun; throws
  // std::runtime_error naming the target and LUN that failed.
  TargetCatalog(const config::Config& cfg, LunOpener open_lun);

  // --- reading: any thread ---
  std::shared_ptr<const iscsi::TargetEntry> find_target(std::string_view name) const;
  std::vector<std::shared_ptr<iscsi::TargetEntry>> targets() const;
  // Whether target is offered on the portal a connection came in through
  // (its local address, "127.0.0.1:3260"): target.portals, or every portal.
  bool offered_on(std::string_view target, const std::string& local_address) const;
  void append_send_targets(std::string_view initiator, std::string_view which,
                           const std::string& local_address, std::string& out) const;
  // The CHAP policy of a login to target (or of discovery): nullopt when none is set
  // or the target is unknown. Holds secrets: never log it.
  std::optional<iscsi::AuthPolicy> auth_policy(iscsi::SessionType type,
                                               std::string_view target) const;
  // The LU whose VPD page 83h NAA designator is `designator` that the initiator of nexus
  // may use for EXTENDED COPY, else null: a LUN of the nexus's own target it sees (LUN
  // masking), or a LUN it would see in another target it could log in to from `portal`
  // (where its session came in; nullopt: unknown, so only targets on every portal): the
  // target's allowed_initiators admit it, the target is offered there, and it asks no
  // CHAP or the same initiator credentials as the nexus's own target.
  std::shared_ptr<scsi::LogicalUnit> find_copy_target(
      std::uint64_t designator, const scsi::Nexus& nexus,
      const std::optional<std::string>& portal) const;
  // Sessions and connections of a target for /metrics (null: no such target).
  std::shared_ptr<metrics::TargetCounters> target_counters(std::string_view name) const;
  // Parallel to targets() (same order) while no change comes between the two calls:
  // call both from the control-plane thread, which makes every change.
  std::vector<std::shared_ptr<metrics::TargetCounters>> all_target_counters() const;

  // --- live changes: control-plane thread only; throw std::runtime_error ---
  // Serves t with the LUs opened for it (by LUN number; missing ones are opened).
  void add_target(const config::Target& t,
                  std::map<std::uint32_t, std::shared_ptr<scsi::LogicalUnit>> opened = {});
  void remove_target(const std::string& name);
  void set_target_initiators(const std::string& target, std::vector<std::string> initiators);
  void set_target_chap(const std::string& target, const std::optional<config::Chap>& chap);
  // Puts lu in the place of `waiting` with the masking that LUN has now. False, and
  // nothing changes, when that LUN was removed or replaced meanwhile.
  bool replace_waiting_lun(const std::string& target, const config::Lun& l,
                           const scsi::LogicalUnit* waiting, std::shared_ptr<scsi::LogicalUnit> lu);
  // Adds lu (or puts it in place of the LUN of that number) with l's masking.
  void put_lun(const std::string& target, const config::Lun& l,
               std::shared_ptr<scsi::LogicalUnit> lu);
  void remove_lun(const std::string& target, std::uint32_t lun);
  void set_lun_initiators(const std::string& target, std::uint32_t lun,
                          std::vector<std::string> initiators);
  // Grows the LUN's backing store to bytes and its block count with it.
  void resize_lun(const std::string& target, std::uint32_t lun, std::uint64_t bytes);
  void set_portals(std::vector<config::Portal> portals);

 private:
  struct Snapshot {
    std::vector<std::shared_ptr<iscsi::TargetEntry>> targets;
    std::vector<config::Portal> portals;
    std::map<std::string, iscsi::AuthPolicy, std::less<>> target_auth;  // targets with CHAP
    std::vector<std::shared_ptr<metrics::TargetCounters>> counters;     // parallel to targets
    // Targets limited to some portals (target.portals); the others: every portal.
    std::map<std::string, std::vector<config::Portal>, std::less<>> target_portals;
  };
  std::shared_ptr<const Snapshot> snapshot() const;
  void publish(std::shared_ptr<const Snapshot> next);
  std::shared_ptr<iscsi::TargetEntry> entry(const std::string& target) const;  // or throws
  // The LUN map t starts with: the LUs given, the others opened now.
  std::shared_ptr<scsi::LunMap> first_luns(
      const config::Target& t, std::map<std::uint32_t, std::shared_ptr<scsi::LogicalUnit>>& opened);
  // Whether the initiator of nexus could log in to t from portal (find_copy_target).
  bool could_log_in(const Snapshot& snap, const iscsi::TargetEntry& t, const scsi::Nexus& nexus,
                    const std::optional<std::string>& portal) const;

  LunOpener open_lun_;
  std::optional<iscsi::AuthPolicy> discovery_auth_;
  mutable std::mutex snapshot_mu_;
  std::shared_ptr<const Snapshot> snapshot_;
};

}  // namespace ringtgt::net
