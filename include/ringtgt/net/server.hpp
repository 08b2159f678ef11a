// The control plane: portals (acceptors) on Boost.Asio handing connections
// to the reactor workers, and the orderly shutdown of both.
#pragma once

#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ringtgt/config/config.hpp"
#include "ringtgt/net/registry.hpp"
#include "ringtgt/net/socket_connection.hpp"
#include "ringtgt/net/worker.hpp"

namespace ringtgt::net {

// One connection as the admin socket reports it (gathered on its reactor).
struct SessionInfo {
  std::uint64_t connection_id = 0;
  unsigned worker = 0;
  std::string peer, local;
  bool logged_in = false;  // full feature phase
  bool closing = false;    // being closed (logout, administrator, error)
  bool discovery = false;
  std::string initiator, target;
  std::uint64_t isid = 0;
  std::uint16_t tsih = 0;
  iscsi::SessionParams params;  // negotiated
  std::uint32_t commands_in_flight = 0;
  std::uint64_t bytes_in = 0, bytes_out = 0;
};

class Server {
 public:
  Server(const config::Config& cfg, Registry& registry);
  ~Server();

  // Starts the workers and binds every portal; throws std::runtime_error
  // naming the portal that could not be bound.
  void start();
  // Stops accepting, lets in-flight commands finish, closes every
  // connection and stops the workers; then run() returns.
  void shutdown();
  boost::asio::io_context& io() { return io_; }
  // Runs the control plane on the calling thread until shutdown(); the
  // destructor then waits (bounded) for the workers to drain.
  void run();
  std::size_t worker_count() const { return workers_.size(); }
  const std::vector<std::unique_ptr<Worker>>& workers() const { return workers_; }

  // --- control-plane thread only: live changes and the admin socket ---
  // Binds and starts accepting on p; throws std::runtime_error naming it.
  void open_portal(const config::Portal& p);
  // Stops accepting on p (connections made through it stay); false: not open.
  bool close_portal(const config::Portal& p);
  // Runs act on each connection on its own reactor (act may close it) and gives the
  // descriptions of those act returned true for to done, on this thread. Workers that
  // do not answer within kGatherLimit are left out (and logged).
  using SessionAction = std::function<bool(SocketConnection&, const SessionInfo&)>;
  void visit_sessions(SessionAction act, std::function<void(std::vector<SessionInfo>)> done);

 private:
  using AcceptorPtr = std::shared_ptr<boost::asio::ip::tcp::acceptor>;
  void accept(AcceptorPtr acceptor);
  static constexpr std::chrono::seconds kDrainLimit{30};

  const config::Config& cfg_;
  Registry& registry_;
  boost::asio::io_context io_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::pair<std::string, AcceptorPtr>> acceptors_;  // by Portal::to_string()
  static constexpr std::chrono::seconds kGatherLimit{5};
  unsigned next_worker_ = 0;
  std::uint64_t refused_connections_ = 0;  // over limits.max_connections
  bool stopping_ = false;
};

}  // namespace ringtgt::net
