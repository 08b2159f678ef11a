// The admin socket: JSON-RPC 2.0 (json_rpc.hpp) over a Unix stream socket, served by
// Asio on the control-plane io_context. Who may connect: root, the daemon's own user
// and members of [admin] group (SO_PEERCRED); the socket file is mode 0660.
#pragma once

#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <sys/types.h>

#include <boost/asio.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "ringtgt/admin/json_rpc.hpp"

namespace ringtgt::admin {

class AdminServer {
 public:
  AdminServer(boost::asio::io_context& io, const Dispatcher& dispatcher);
  ~AdminServer();

  // Creates the socket's folder, replaces a stale socket, binds, sets mode 0660 (and
  // the group), listens. Throws std::runtime_error saying what to fix.
  void start(const std::string& path, const std::string& group);
  void stop();  // closes the socket, removes the file; clients get closed

  static constexpr std::size_t kMaxClients = 64;
  static constexpr std::chrono::seconds kIdleLimit{120};

 private:
  class Client;
  void accept();
  bool permitted(uid_t uid, gid_t gid) const;

  boost::asio::io_context& io_;
  const Dispatcher& dispatcher_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> acceptor_;
  std::string path_;
  std::string group_;
  std::optional<gid_t> gid_;
  std::shared_ptr<std::size_t> clients_ = std::make_shared<std::size_t>(0);
  bool stopped_ = false;
};

}  // namespace ringtgt::admin
