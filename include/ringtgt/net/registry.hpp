// What all reactors share: the targets being served and the open sessions.
#pragma once

#include <atomic>
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
#include "ringtgt/net/session_id.hpp"
#include "ringtgt/scsi/logical_unit.hpp"

namespace ringtgt::net {

class Worker;
class SocketConnection;

// Builds the LogicalUnit of a LUN of a target from its config, not yet served; throws
// std::runtime_error naming the target and LUN. The daemon gives the registry the LUN
// factory's (lun::LunFactory), so net serves LUs without knowing their backends.
using LunOpener = std::function<std::shared_ptr<scsi::LogicalUnit>(const std::string& target,
                                                                   const config::Lun& l)>;

// The targets being served, as an immutable snapshot that the control plane
// replaces whole (live changes, reload) while reactors read it at login and
// discovery; sessions keep their TargetEntry alive through its shared_ptr. The
// session table is touched at login and logout only, never per I/O.
class Registry {
 public:
  // Opens every LUN of cfg with open_lun (which creates backing files where the config
  // gives a size); throws std::runtime_error naming the target and LUN that failed.
  Registry(const config::Config& cfg, LunOpener open_lun);

  std::shared_ptr<const iscsi::TargetEntry> find_target(std::string_view name) const;
  // Whether target is offered on the portal a connection came in through
  // (its local address, "127.0.0.1:3260"): target.portals, or every portal.
  bool offered_on(std::string_view target, const std::string& local_address) const;
  void append_send_targets(std::string_view initiator, std::string_view which,
                           const std::string& local_address, std::string& out) const;
  std::vector<std::shared_ptr<iscsi::TargetEntry>> targets() const;
  iscsi::ConnectionSettings connection_settings() const { return settings_; }
  // The CHAP policy of a login to target (or of discovery): nullopt when none is set
  // or the target is unknown. Holds secrets: never log it.
  std::optional<iscsi::AuthPolicy> auth_policy(iscsi::SessionType type,
                                               std::string_view target) const;

  // EXTENDED COPY between LUs (the CopyTargetResolver open_lun installs on every LU): the
  // LU whose VPD page 83h NAA designator is `designator`, if the initiator of nexus may
  // use it, else null. That is a LUN of the nexus's own target it sees (LUN masking), or
  // a LUN it would see in another target it could log in to from where its session is:
  // the target's allowed_initiators admit it, the target is offered on the portal the
  // session came in through, and the target asks no CHAP or the same initiator
  // credentials as the nexus's own target. Any thread.
  std::shared_ptr<scsi::LogicalUnit> find_copy_target(std::uint64_t designator,
                                                      const scsi::Nexus& nexus) const;

  // --- live changes: control-plane thread only ---
  // The LogicalUnit of a LUN of target, not yet served: built by the LunOpener, and
  // given this registry's EXTENDED COPY resolver and PREEMPT AND ABORT reach.
  // Throws std::runtime_error.
  std::shared_ptr<scsi::LogicalUnit> open_lun(const std::string& target,
                                              const config::Lun& l) const;
  // Serves t with the LUs opened for it (by LUN number; missing ones are opened).
  void add_target(const config::Target& t,
                  std::map<std::uint32_t, std::shared_ptr<scsi::LogicalUnit>> opened = {});
  void remove_target(const std::string& name);
  void set_target_initiators(const std::string& target, std::vector<std::string> initiators);
  void set_target_chap(const std::string& target, const std::optional<config::Chap>& chap);
  // Adds lu (or puts it in place of the LUN of that number) with l's masking.
  void put_lun(const std::string& target, const config::Lun& l,
               std::shared_ptr<scsi::LogicalUnit> lu);
  void remove_lun(const std::string& target, std::uint32_t lun);
  void set_lun_initiators(const std::string& target, std::uint32_t lun,
                          std::vector<std::string> initiators);
  // Grows the LUN's backing store to bytes and its block count with it.
  void resize_lun(const std::string& target, std::uint32_t lun, std::uint64_t bytes);
  void set_portals(std::vector<config::Portal> portals);

  // A session reached full feature phase through the portal at local_address: returns its
  // TSIH, and closes an older session with the same id (reinstatement, RFC 7143 §6.3.5).
  // Returns 0 (and logs why, naming the initiator) when [limits]
  // max_sessions or max_sessions_per_initiator is reached; a reinstatement
  // replaces a session, so it is never refused.
  std::uint16_t session_started(const SessionId& id, Worker* worker,
                                std::weak_ptr<SocketConnection> conn,
                                std::string local_address = {});
  // The new session `tsih` of id may start once the sessions it reinstated have no task
  // left in the SCSI layer: ready runs on worker then (posted), or at once (before this
  // returns) when none is still closing. Not run if session tsih ends first.
  void after_reinstated(const SessionId& id, std::uint16_t tsih, Worker* worker,
                        std::function<void()> ready);
  void session_ended(const SessionId& id, std::uint16_t tsih);
  // A reset or CLEAR TASK SET received on session `except`: every other session of target
  // aborts its tasks for LUN lun (every LUN: nullopt), and done runs on the calling worker
  // once all of them have answered (their aborted tasks are out of the backend).
  void abort_tasks_elsewhere(const std::string& target, std::optional<std::uint64_t> lun,
                             const SocketConnection* except, std::function<void()> done) const;
  std::size_t session_count() const;

  // Sessions and connections of a target for /metrics (null: no such target);
  // parallel to targets().
  std::shared_ptr<metrics::TargetCounters> target_counters(std::string_view name) const;
  // Parallel to targets() (same order) while no change comes between the two calls:
  // call both from the control-plane thread, which makes every change.
  std::vector<std::shared_ptr<metrics::TargetCounters>> all_target_counters() const;

 private:
  struct SessionRef {
    std::uint16_t tsih;
    Worker* worker;
    std::weak_ptr<SocketConnection> conn;
    std::string local_address;  // the portal it came in through
  };
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
  // The scsi::TaskSetAborter of LUN lun of target: finds the sessions of the
  // preempted initiator ports, has each one's worker abort its tasks, and
  // completes on the PERSISTENT RESERVE OUT's worker when all have answered.
  void abort_preempted(const std::string& target, std::uint64_t lun,
                       std::vector<scsi::InitiatorPort> ports, const scsi::Task& keep,
                       std::function<void()> done) const;
  // The sessions `asked` picks (under mu_) abort their tasks for LUN lun (every LUN:
  // nullopt) of target but keep; done runs on the calling worker once all have answered.
  void abort_tasks_in(const std::string& target, std::optional<std::uint64_t> lun,
                      const scsi::Task* keep,
                      const std::function<bool(const SessionId&, const SessionRef&)>& asked,
                      std::function<void()> done) const;
  // A login waiting for the sessions it reinstated (after_reinstated).
  struct Waiter {
    std::uint16_t tsih;
    Worker* worker;
    std::function<void()> ready;
  };
  void release_waiters(const SessionId& id);  // under mu_

  LunOpener open_lun_;
  mutable std::mutex snapshot_mu_;
  std::shared_ptr<const Snapshot> snapshot_;
  iscsi::ConnectionSettings settings_;
  std::optional<iscsi::AuthPolicy> discovery_auth_;
  mutable std::mutex mu_;
  std::map<SessionId, SessionRef> sessions_;
  // Sessions replaced by a reinstatement and still closing: their commands
  // in flight are those of the same initiator port.
  std::multimap<SessionId, SessionRef> retiring_;
  std::multimap<SessionId, Waiter> waiting_;
  std::uint16_t next_tsih_ = 1;
  config::Limits limits_;
};

}  // namespace ringtgt::net
