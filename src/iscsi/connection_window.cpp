// The session window as the connection offers it: which commands it takes (CmdSN order),
// the MaxCmdSN it advertises, and the NOP-In that tells a waiting initiator it reopened.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "iscsi_task.hpp"
#include "ringtgt/iscsi/connection.hpp"

namespace ringtgt::iscsi {

bool Connection::check_cmd_sn(const Bhs& bhs) {
  std::uint32_t sn = bhs.cmd_sn();
  if (bhs.immediate()) return true;
  if (window_.accept(sn)) return true;
  // On one connection non-immediate commands arrive in CmdSN order, so a gap
  // can only come from a broken or hostile initiator: the command is ignored,
  // as one outside the window must be.
  // Logged, but a peer sending a stream of them must not flood the log.
  auto level = ++ignored_commands_ <= kWarningsLogged ? spdlog::level::warn : spdlog::level::debug;
  spdlog::log(level, "{} ({}): CmdSN {} is not ExpCmdSN {} (window ends at {}); command ignored{}",
              peer_, params_.initiator_name, sn, window_.exp_cmd_sn(), window_.max_cmd_sn_sent(),
              ignored_commands_ == kWarningsLogged ? " (further ones logged at debug)" : "");
  return false;
}

std::uint32_t Connection::max_cmd_sn() {
  // A task whose status is on its way out no longer holds a slot of the queue
  // depth: counting it would close the window of an initiator that keeps
  // exactly queue_depth commands outstanding. But it holds its place in the
  // task pool until the initiator has read it, so the window never offers more
  // commands than the pool can take: a peer that does not read its responses
  // sees the window close, not TASK SET FULL (the window reopens with a NOP-In,
  // see announce_window).
  return window_.max_cmd_sn(window_room());
}

std::uint32_t Connection::window_room() const {
  std::uint32_t busy = tasks_.in_use() - tasks_.responding();
  std::uint32_t room = settings_.queue_depth > busy ? settings_.queue_depth - busy : 0;
  if (phase_ == Phase::login) return room;  // no task pool yet
  return std::min<std::uint32_t>(room, static_cast<std::uint32_t>(tasks_.free()));
}

void Connection::announce_window() {
  // The initiator may send nothing until it hears a larger MaxCmdSN, and no
  // response is on its way to carry one: a NOP-In that asks for no answer
  // does (RFC 7143 11.19: TTT and ITT reserved, StatSN not advanced).
  if (phase_ != Phase::full_feature || closing_ || shut_down_) return;
  if (window_room() == 0) return;  // still closed: a later release reopens it
  OutPdu* pdu = new_pdu(Opcode::nop_in, 0x80);
  pdu->bhs.set_itt(kReservedTag);
  pdu->bhs.set_ttt(kReservedTag);
  prepare(pdu, false);
  out_.append(pdu);
}

}  // namespace ringtgt::iscsi
