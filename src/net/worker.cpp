#include "ringtgt/net/worker.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>

#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/net/socket_connection.hpp"

namespace ringtgt::net {

unsigned resolve_worker_count(unsigned configured) {
  return configured != 0 ? configured : std::max(1u, std::thread::hardware_concurrency());
}

Worker::Worker(unsigned index, Registry& registry)
    : index_(index), registry_(registry), reactor_(index) {}

Worker::~Worker() {
  join();
}

void Worker::start() {
  reactor_.on_tick([this](reactor::Clock::time_point now) { tick(now); });
  thread_ = std::thread([this] {
    metrics::set_thread_slot(index_);  // this worker's block in every LUN's counters
    try {
      reactor_.run();
    } catch (const std::exception& e) {
      spdlog::critical("worker {}: {}", index_, e.what());
      std::abort();
    }
    conns_.clear();
    done_.store(true);
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::adopt(int fd, std::string peer, std::string local) {
  reactor_.post([this, fd, peer = std::move(peer), local = std::move(local)]() mutable {
    if (draining_) {
      ::close(fd);
      return;
    }
    auto c = std::make_shared<SocketConnection>(reactor_, index_, registry_, fd, std::move(peer),
                                                std::move(local));
    conns_.push_back(c);
    count_.store(conns_.size());
    c->start();
  });
}

void Worker::drain_and_stop() {
  reactor_.post([this] {
    draining_ = true;
    for (auto& c : conns_) c->close("target shutting down");
    tick(reactor::Clock::now());
  });
}

void Worker::visit_connections(std::function<void(SocketConnection&)> visit,
                               std::function<void()> done) {
  reactor_.post([this, visit = std::move(visit), done = std::move(done)] {
    for (auto& c : conns_)
      if (!c->finished()) visit(*c);
    done();
  });
}

void Worker::tick(reactor::Clock::time_point now) {
  for (std::size_t i = 0; i < conns_.size();) {
    conns_[i]->on_tick(now);
    if (conns_[i]->finished()) {
      conns_[i] = std::move(conns_.back());
      conns_.pop_back();
    } else {
      ++i;
    }
  }
  count_.store(conns_.size());
  if (draining_ && conns_.empty()) reactor_.stop();
}

}  // namespace ringtgt::net
