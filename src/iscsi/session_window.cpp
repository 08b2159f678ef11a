#include "ringtgt/iscsi/session_window.hpp"

#include <algorithm>

namespace ringtgt::iscsi {

bool SessionWindow::accept(std::uint32_t sn) {
  if (sn != exp_cmd_sn_) return false;
  advance();
  return true;
}

void SessionWindow::advance() {
  ++exp_cmd_sn_;
  // CmdSNs already counted as received (abandoned commands) are passed too.
  for (auto it = std::find(abandoned_cmd_sns_.begin(), abandoned_cmd_sns_.end(), exp_cmd_sn_);
       it != abandoned_cmd_sns_.end();
       it = std::find(abandoned_cmd_sns_.begin(), abandoned_cmd_sns_.end(), exp_cmd_sn_)) {
    abandoned_cmd_sns_.erase(it);
    ++exp_cmd_sn_;
  }
}

void SessionWindow::count_as_received(std::uint32_t sn, std::uint32_t limit) {
  if (sn == exp_cmd_sn_) return advance();
  if (!sn_lt(exp_cmd_sn_, sn) || abandoned_cmd_sns_.size() >= limit) return;
  if (std::find(abandoned_cmd_sns_.begin(), abandoned_cmd_sns_.end(), sn) ==
      abandoned_cmd_sns_.end())
    abandoned_cmd_sns_.push_back(sn);
}

std::uint32_t SessionWindow::max_cmd_sn(std::uint32_t room) {
  std::uint32_t now = exp_cmd_sn_ + room - 1;
  if (!advertised_ || sn_lt(max_cmd_sn_sent_, now)) max_cmd_sn_sent_ = now;
  advertised_ = true;
  return max_cmd_sn_sent_;
}

}  // namespace ringtgt::iscsi
