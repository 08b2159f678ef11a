// The sequence numbers of a session (RFC 7143 §4.2.2): the CmdSN window the initiator
// may send commands in (ExpCmdSN .. MaxCmdSN) and the StatSN of the target's responses.
#pragma once

#include <cstdint>
#include <vector>

#include "ringtgt/iscsi/pdu.hpp"

namespace ringtgt::iscsi {

class SessionWindow {
 public:
  // The first login request sets both: StatSN from its ExpStatSN, ExpCmdSN from its CmdSN.
  void begin(std::uint32_t stat_sn, std::uint32_t exp_cmd_sn) {
    stat_sn_ = stat_sn;
    exp_cmd_sn_ = exp_cmd_sn;
  }

  // The StatSN of a response; a response that counts (advance) takes the next one.
  std::uint32_t stat_sn(bool advance) { return advance ? stat_sn_++ : stat_sn_; }
  std::uint32_t exp_cmd_sn() const { return exp_cmd_sn_; }

  // A non-immediate command with CmdSN sn came: true when it is the one expected (the
  // window moves on past it), false when it must be ignored.
  bool accept(std::uint32_t sn);
  // A CmdSN in the window whose command will never come (RFC 7143 §11.5.1 b): counted as
  // received, so later commands do not wait behind the gap. At most limit are remembered.
  void count_as_received(std::uint32_t sn, std::uint32_t limit);

  // The MaxCmdSN to advertise with room commands more allowed; it never moves backwards
  // (RFC 7143 §4.2.2.1).
  std::uint32_t max_cmd_sn(std::uint32_t room);
  // The largest MaxCmdSN advertised so far.
  std::uint32_t max_cmd_sn_sent() const { return max_cmd_sn_sent_; }

  // A task gave its slot back: if the initiator sees the window closed, it may need to
  // hear that it reopened (take_reopen, when output is next taken).
  void task_released() {
    if (sn_lt(max_cmd_sn_sent_, exp_cmd_sn_)) may_reopen_ = true;
  }
  bool take_reopen() {
    bool reopen = may_reopen_;
    may_reopen_ = false;
    return reopen;
  }

 private:
  // ExpCmdSN moves past its CmdSN and any counted as received after it.
  void advance();

  std::uint32_t stat_sn_ = 0;
  std::uint32_t exp_cmd_sn_ = 0;
  // CmdSNs ahead of exp_cmd_sn_ that count as received though no command came with
  // them (ABORT TASK of a command never sent).
  std::vector<std::uint32_t> abandoned_cmd_sns_;
  std::uint32_t max_cmd_sn_sent_ = 0;
  bool advertised_ = false;
  bool may_reopen_ = false;  // a task came back while the window was closed
};

}  // namespace ringtgt::iscsi
