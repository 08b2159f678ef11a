// What the session table asks of a logged-in connection.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace ringtgt::scsi {
class Task;
}

namespace ringtgt::net {

// The session table reaches connections only through this, so that it knows
// nothing of sockets or workers and net's files include one another one way
// (SocketConnection implements it). Both run on the connection's reactor
// thread: the table posts them there.
class SessionPeer {
 public:
  // A newer login reinstated this session: flush what is queued, then close.
  virtual void close(const char* why) = 0;
  // Another nexus ended this session's tasks for LUN lun (every LUN: nullopt) of target,
  // all but keep: a PREEMPT AND ABORT, a reset or a CLEAR TASK SET. done runs once none
  // of them is in the backend any more (at once for a session of another target).
  virtual void abort_tasks(const std::string& target, std::optional<std::uint64_t> lun,
                           const scsi::Task* keep, std::function<void()> done) = 0;

 protected:
  ~SessionPeer() = default;
};

}  // namespace ringtgt::net
