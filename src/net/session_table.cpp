#include "ringtgt/net/session_table.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>

namespace ringtgt::net {

bool SessionTable::admits(const std::string& initiator) const {
  if (sessions_.size() >= limits_.max_sessions) {
    spdlog::warn("login refused: initiator {}: {} sessions open (limits.max_sessions)", initiator,
                 sessions_.size());
    return false;
  }
  // Sessions are ordered by initiator first: its own are one run of the map.
  std::size_t mine = 0;
  for (auto s = sessions_.lower_bound(SessionId{initiator, 0, {}});
       s != sessions_.end() && s->first.initiator == initiator; ++s)
    ++mine;
  if (mine >= limits_.max_sessions_per_initiator) {
    spdlog::warn(
        "login refused: initiator {}: {} sessions of it open (limits.max_sessions_per_initiator)",
        initiator, mine);
    return false;
  }
  return true;
}

void SessionTable::retire(const std::map<SessionId, SessionRef>::iterator& it) {
  const SessionId& id = it->first;
  spdlog::info(
      "session reinstatement: initiator {} ISID {:012x} target {}: closing the old session "
      "(tsih {})",
      id.initiator, id.isid, id.target, it->second.tsih);
  it->second.home->post([old = it->second.peer] {
    if (auto p = old.lock()) p->close("session reinstated by a new login");
  });
  // Its commands in flight still count until it ends (after_reinstated).
  retiring_.emplace(id, it->second);
}

std::uint16_t SessionTable::session_started(const SessionId& id, reactor::Reactor* home,
                                            std::weak_ptr<SessionPeer> peer,
                                            std::string local_address) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  // [limits]: a reinstatement replaces a session and is always let in.
  if (it == sessions_.end() && !admits(id.initiator)) return 0;
  std::uint16_t tsih = next_tsih_++;
  if (next_tsih_ == 0) next_tsih_ = 1;  // TSIH 0 means "new session" in a login
  if (it != sessions_.end()) retire(it);
  sessions_[id] = SessionRef{tsih, home, std::move(peer), std::move(local_address)};
  return tsih;
}

void SessionTable::after_reinstated(const SessionId& id, std::uint16_t tsih, reactor::Reactor* home,
                                    std::function<void()> ready) {
  {
    std::lock_guard lock(mu_);
    if (const auto n = retiring_.count(id); n != 0) {
      spdlog::info(
          "login of initiator {} ISID {:012x} to target {} waits until the {} session(s) it "
          "reinstates have no command left in the backend",
          id.initiator, id.isid, id.target, n);
      waiting_.emplace(id, Waiter{tsih, home, std::move(ready)});
      return;
    }
  }
  ready();
}

void SessionTable::release_waiters(const SessionId& id) {
  if (retiring_.contains(id)) return;
  auto [first, last] = waiting_.equal_range(id);
  for (auto w = first; w != last; ++w) w->second.home->post(std::move(w->second.ready));
  waiting_.erase(first, last);
}

void SessionTable::session_ended(const SessionId& id, std::uint16_t tsih) {
  std::lock_guard lock(mu_);
  // A login that waited and went away waits no more.
  std::erase_if(waiting_, [&](const auto& w) { return w.first == id && w.second.tsih == tsih; });
  auto it = sessions_.find(id);
  if (it != sessions_.end() && it->second.tsih == tsih) {
    sessions_.erase(it);
    return;
  }
  auto [first, last] = retiring_.equal_range(id);
  for (auto r = first; r != last; ++r) {
    if (r->second.tsih == tsih) {
      retiring_.erase(r);
      release_waiters(id);
      return;
    }
  }
}

std::size_t SessionTable::session_count() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

std::optional<std::string> SessionTable::portal_of(const scsi::Nexus& nexus) const {
  // Nexus::session_id is the ISID and TSIH; the TSIH tells a reinstated session apart.
  std::lock_guard lock(mu_);
  auto it =
      sessions_.find(SessionId{nexus.initiator_name, nexus.session_id >> 16, nexus.target_name});
  if (it == sessions_.end() || it->second.tsih != (nexus.session_id & 0xffff)) return std::nullopt;
  return it->second.local_address;
}

}  // namespace ringtgt::net
