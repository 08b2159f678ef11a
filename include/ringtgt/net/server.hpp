// The control plane: portals (acceptors) on Boost.Asio handing connections
// to the reactor workers, and the orderly shutdown of both.
#pragma once

#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "ringtgt/config/config.hpp"
#include "ringtgt/net/registry.hpp"
#include "ringtgt/net/worker.hpp"

namespace ringtgt::net {

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

 private:
  void accept(boost::asio::ip::tcp::acceptor& acceptor);
  static constexpr std::chrono::seconds kDrainLimit{30};

  const config::Config& cfg_;
  Registry& registry_;
  boost::asio::io_context io_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors_;
  unsigned next_worker_ = 0;
  std::uint64_t refused_connections_ = 0;  // over limits.max_connections
  bool stopping_ = false;
};

}  // namespace ringtgt::net
