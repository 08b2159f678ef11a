#include "ringtgt/iscsi/target_entry.hpp"

#include <algorithm>

namespace ringtgt::iscsi {

bool TargetEntry::allows(std::string_view initiator) const {
  std::lock_guard lock(mu_);
  if (allowed_initiators_.empty()) return true;
  return std::find(allowed_initiators_.begin(), allowed_initiators_.end(), initiator) !=
         allowed_initiators_.end();
}

std::vector<std::string> TargetEntry::allowed_initiators() const {
  std::lock_guard lock(mu_);
  return allowed_initiators_;
}

void TargetEntry::set_allowed_initiators(std::vector<std::string> initiators) {
  std::lock_guard lock(mu_);
  allowed_initiators_ = std::move(initiators);
}

std::shared_ptr<scsi::LunMap> TargetEntry::luns() const {
  std::lock_guard lock(mu_);
  return luns_;
}

void TargetEntry::set_luns(std::shared_ptr<scsi::LunMap> map) {
  std::lock_guard lock(mu_);
  luns_ = std::move(map);
  luns_version_.fetch_add(1, std::memory_order_release);
}

}  // namespace ringtgt::iscsi
