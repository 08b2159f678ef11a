// The open sessions of every target, across the reactors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ringtgt/config/config.hpp"
#include "ringtgt/net/session_id.hpp"
#include "ringtgt/net/session_peer.hpp"
#include "ringtgt/reactor/reactor.hpp"
#include "ringtgt/scsi/task.hpp"

namespace ringtgt::net {

// Sessions by SessionId: who may log in ([limits]), which session a login
// reinstates (RFC 7143 §6.3.5) and when the new one may start, and which
// sessions a task-set abort reaches. Touched at login, logout and task
// management only, never per I/O; every member is thread-safe.
class SessionTable {
 public:
  explicit SessionTable(config::Limits limits) : limits_(limits) {}

  // A session reached full feature phase through the portal at local_address, on the
  // reactor `home`: returns its TSIH, and closes an older session with the same id
  // (reinstatement). Returns 0 (and logs why, naming the initiator) when [limits]
  // max_sessions or max_sessions_per_initiator is reached; a reinstatement
  // replaces a session, so it is never refused.
  std::uint16_t session_started(const SessionId& id, reactor::Reactor* home,
                                std::weak_ptr<SessionPeer> peer, std::string local_address = {});
  // The new session `tsih` of id may start once the sessions it reinstated have no task
  // left in the SCSI layer: ready runs on home then (posted), or at once (before this
  // returns) when none is still closing. Not run if session tsih ends first.
  void after_reinstated(const SessionId& id, std::uint16_t tsih, reactor::Reactor* home,
                        std::function<void()> ready);
  void session_ended(const SessionId& id, std::uint16_t tsih);
  std::size_t session_count() const;
  // The portal (local address) the session of nexus came in through, if it is open.
  std::optional<std::string> portal_of(const scsi::Nexus& nexus) const;

 private:
  struct SessionRef {
    std::uint16_t tsih;
    reactor::Reactor* home;  // the reactor its connection runs on
    std::weak_ptr<SessionPeer> peer;
    std::string local_address;  // the portal it came in through
  };
  // A login waiting for the sessions it reinstated (after_reinstated).
  struct Waiter {
    std::uint16_t tsih;
    reactor::Reactor* home;
    std::function<void()> ready;
  };

  // Whether a new session of initiator would pass [limits] (mu_ held); logs if not.
  bool admits(const std::string& initiator) const;
  // Closes the session `it` replaces and keeps it as retiring (mu_ held).
  void retire(const std::map<SessionId, SessionRef>::iterator& it);
  void release_waiters(const SessionId& id);  // mu_ held

  config::Limits limits_;
  mutable std::mutex mu_;
  std::map<SessionId, SessionRef> sessions_;
  // Sessions replaced by a reinstatement and still closing: their commands
  // in flight are those of the same initiator port.
  std::multimap<SessionId, SessionRef> retiring_;
  std::multimap<SessionId, Waiter> waiting_;
  std::uint16_t next_tsih_ = 1;
};

}  // namespace ringtgt::net
