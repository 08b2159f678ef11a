// What the session table asks of a logged-in connection.
#pragma once

namespace ringtgt::net {

// The session table reaches connections only through this, so that it knows
// nothing of sockets or workers and net's files include one another one way
// (SocketConnection implements it). It runs on the connection's reactor
// thread: the table posts it there.
class SessionPeer {
 public:
  // A newer login reinstated this session: flush what is queued, then close.
  virtual void close(const char* why) = 0;

 protected:
  ~SessionPeer() = default;
};

}  // namespace ringtgt::net
