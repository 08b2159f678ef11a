// What all reactors share: the target catalog and the session table, wired together.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ringtgt/config/config.hpp"
#include "ringtgt/iscsi/connection.hpp"
#include "ringtgt/net/session_table.hpp"
#include "ringtgt/net/target_catalog.hpp"
#include "ringtgt/scsi/logical_unit.hpp"

namespace ringtgt::net {

// The catalog knows targets and their LUs, the table knows sessions; what
// needs both lives here: the hooks every LU gets (EXTENDED COPY looks up copy
// targets where the nexus's session could log in; PREEMPT AND ABORT reaches
// the preempted sessions) and the iSCSI settings every connection starts with.
class Registry {
 public:
  // Opens every LUN of cfg with open_lun (which creates backing files where the config
  // gives a size) and gives each this registry's hooks; throws std::runtime_error
  // naming the target and LUN that failed.
  Registry(const config::Config& cfg, LunOpener open_lun);

  TargetCatalog& catalog() { return catalog_; }
  const TargetCatalog& catalog() const { return catalog_; }
  SessionTable& sessions() { return sessions_; }
  const SessionTable& sessions() const { return sessions_; }
  const iscsi::ConnectionSettings& connection_settings() const { return settings_; }

  // The LogicalUnit of a LUN of target, not yet served: built by the LunOpener and
  // given this registry's hooks. Control-plane thread; throws std::runtime_error.
  std::shared_ptr<scsi::LogicalUnit> open_lun(const std::string& target,
                                              const config::Lun& l) const;
  // A LU opened in the background (off this thread) for a LUN that waited for its
  // store: given this registry's hooks and put in the place of `waiting`
  // (TargetCatalog::replace_waiting_lun). Control-plane thread.
  bool replace_waiting_lun(const std::string& target, const config::Lun& l,
                           const scsi::LogicalUnit* waiting, std::shared_ptr<scsi::LogicalUnit> lu);
  // EXTENDED COPY between LUs (the CopyTargetResolver every LU gets): what the catalog
  // finds for nexus from the portal its session came in through. Any thread.
  std::shared_ptr<scsi::LogicalUnit> find_copy_target(std::uint64_t designator,
                                                      const scsi::Nexus& nexus) const;

 private:
  // Gives lu the hooks every LU of this registry has.
  void attach(const std::string& target, const config::Lun& l, scsi::LogicalUnit& lu) const;

  LunOpener open_lun_;
  iscsi::ConnectionSettings settings_;
  SessionTable sessions_;
  TargetCatalog catalog_;  // last: its first LUs get hooks that reach the members above
};

}  // namespace ringtgt::net
