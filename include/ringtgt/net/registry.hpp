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

namespace ringtgt::net {

class Worker;
class SocketConnection;

// Targets are built once from the config and only read afterwards; the
// session table is touched at login and logout only, never per I/O.
class Registry {
 public:
  // Opens (and creates where the config gives a size) every LUN's backing
  // store; throws std::runtime_error naming the target and LUN that failed.
  explicit Registry(const config::Config& cfg);

  std::shared_ptr<const iscsi::TargetEntry> find_target(std::string_view name) const;
  // Whether target is offered on the portal a connection came in through
  // (its local address, "127.0.0.1:3260"): target.portals, or every portal.
  bool offered_on(std::string_view target, const std::string& local_address) const;
  void append_send_targets(std::string_view initiator, std::string_view which,
                           const std::string& local_address, std::string& out) const;
  const std::vector<std::shared_ptr<const iscsi::TargetEntry>>& targets() const { return targets_; }
  iscsi::ConnectionSettings connection_settings() const { return settings_; }
  // The CHAP policy of a login to target (or of discovery): nullopt when none is set
  // or the target is unknown. Holds secrets: never log it.
  std::optional<iscsi::AuthPolicy> auth_policy(iscsi::SessionType type,
                                               std::string_view target) const;

  // A session reached full feature phase: returns its TSIH, and closes an
  // older session of the same initiator name and ISID (reinstatement).
  // Returns 0 (and logs why, naming the initiator) when [limits]
  // max_sessions or max_sessions_per_initiator is reached; a reinstatement
  // replaces a session, so it is never refused.
  std::uint16_t session_started(const std::string& initiator, std::uint64_t isid, Worker* worker,
                                std::weak_ptr<SocketConnection> conn);
  void session_ended(const std::string& initiator, std::uint64_t isid, std::uint16_t tsih);
  std::size_t session_count() const;

  // Sessions and connections of a target for /metrics (null: no such target);
  // parallel to targets().
  std::shared_ptr<metrics::TargetCounters> target_counters(std::string_view name) const;
  const std::vector<std::shared_ptr<metrics::TargetCounters>>& all_target_counters() const {
    return target_counters_;
  }

 private:
  struct SessionRef {
    std::uint16_t tsih;
    Worker* worker;
    std::weak_ptr<SocketConnection> conn;
  };
  std::vector<std::shared_ptr<const iscsi::TargetEntry>> targets_;
  std::vector<std::shared_ptr<metrics::TargetCounters>> target_counters_;
  std::vector<config::Portal> portals_;
  iscsi::ConnectionSettings settings_;
  std::optional<iscsi::AuthPolicy> discovery_auth_;
  std::map<std::string, iscsi::AuthPolicy, std::less<>> target_auth_;  // targets with CHAP
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::uint64_t>, SessionRef> sessions_;
  std::uint16_t next_tsih_ = 1;
  config::Limits limits_;
  std::map<std::string, std::vector<config::Portal>, std::less<>> target_portals_;  // if limited
};

// A stable 64-bit identity for a LUN, from its target name and number, so
// INQUIRY's designators do not change across restarts.
std::uint64_t lun_naa(const std::string& target, std::uint32_t lun);

}  // namespace ringtgt::net
