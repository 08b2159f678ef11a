// A reactor thread and the connections that live on it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ringtgt/reactor/reactor.hpp"

namespace ringtgt::net {

class Registry;
class SocketConnection;

// The number of workers for the configured value (0: one per core).
unsigned resolve_worker_count(unsigned configured);

class Worker {
 public:
  Worker(unsigned index, Registry& registry);
  ~Worker();

  void start();
  // Thread-safe: hands an accepted socket to this worker.
  void adopt(int fd, std::string peer, std::string local);
  // Thread-safe: closes every connection once its in-flight work is done,
  // then stops the reactor.
  void drain_and_stop();
  // Thread-safe: runs visit on the reactor thread with each of its connections, then
  // done (also on the reactor thread). How the control plane looks at sessions.
  void visit_connections(std::function<void(SocketConnection&)> visit, std::function<void()> done);
  void join();

  reactor::Reactor& reactor() { return reactor_; }
  unsigned index() const { return index_; }
  std::size_t connection_count() const { return count_.load(); }
  // The reactor loop has returned (or never started).
  bool stopped() const { return !thread_.joinable() || done_.load(); }

 private:
  void tick(reactor::Clock::time_point now);

  unsigned index_;
  Registry& registry_;
  reactor::Reactor reactor_;
  std::thread thread_;
  std::vector<std::shared_ptr<SocketConnection>> conns_;  // reactor thread only
  std::atomic<std::size_t> count_{0};
  bool draining_ = false;
  std::atomic<bool> done_{false};
};

}  // namespace ringtgt::net
