// A target as the protocol engine sees it, shared by every session logged in to it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "ringtgt/scsi/logical_unit.hpp"

namespace ringtgt::iscsi {

// Its name and alias are fixed; its initiator list and LUN map can be changed live by the
// control plane while sessions run: a changed LUN map is published as a new map (copy,
// change, set_luns) and each connection picks it up before its next command, keeping the
// map its in-flight commands run on alive until they finish. Readers on the I/O path only
// load an atomic version number.
class TargetEntry {
 public:
  std::string name;
  std::string alias;

  bool allows(std::string_view initiator) const;
  std::vector<std::string> allowed_initiators() const;  // empty: everyone
  void set_allowed_initiators(std::vector<std::string> initiators);

  std::shared_ptr<scsi::LunMap> luns() const;
  // Publishes map; it must not be changed afterwards.
  void set_luns(std::shared_ptr<scsi::LunMap> map);
  // Bumped by every set_luns.
  std::uint64_t luns_version() const { return luns_version_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> allowed_initiators_;
  std::shared_ptr<scsi::LunMap> luns_;
  std::atomic<std::uint64_t> luns_version_{0};
};

}  // namespace ringtgt::iscsi
