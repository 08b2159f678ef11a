#include "ringtgt/net/server.hpp"

#include <netinet/tcp.h>
#include <spdlog/spdlog.h>

#include <thread>

#include "ringtgt/reactor/buffer_pool.hpp"

namespace ringtgt::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
std::string endpoint_string(const tcp::endpoint& ep) {
  auto addr = ep.address();
  if (addr.is_v6()) {
    auto v6 = addr.to_v6();
    if (v6.is_v4_mapped())
      return asio::ip::make_address_v4(asio::ip::v4_mapped, v6).to_string() + ":" +
             std::to_string(ep.port());
    return "[" + v6.to_string() + "]:" + std::to_string(ep.port());
  }
  return addr.to_string() + ":" + std::to_string(ep.port());
}
}  // namespace

Server::Server(const config::Config& cfg, Registry& registry) : cfg_(cfg), registry_(registry) {}

Server::~Server() {
  // Workers finish their in-flight commands and close; a stuck backend must
  // not keep the process alive forever.
  auto deadline = std::chrono::steady_clock::now() + kDrainLimit;
  for (auto& w : workers_) {
    if (!stopping_) w->drain_and_stop();
  }
  for (auto& w : workers_) {
    while (!w->stopped()) {
      if (std::chrono::steady_clock::now() > deadline) {
        spdlog::critical("workers did not stop within {}s; exiting without them",
                         std::chrono::duration_cast<std::chrono::seconds>(kDrainLimit).count());
        std::_Exit(1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    w->join();
  }
}

void Server::start() {
  unsigned n = resolve_worker_count(cfg_.workers);
  for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>(i, registry_));
  reactor::BufferPool::set_memory_budget(cfg_.limits.max_buffer_memory, n);
  for (auto& w : workers_) w->start();
  for (const auto& p : cfg_.portals) open_portal(p);
}

void Server::open_portal(const config::Portal& p) {
  const std::string name = p.to_string();
  for (const auto& [n, a] : acceptors_)
    if (n == name) throw std::runtime_error("portal " + name + " is open already");
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(p.host, ec);
  if (ec) throw std::runtime_error("portal " + name + ": " + ec.message());
  tcp::endpoint ep(addr, p.port);
  auto acc = std::make_shared<tcp::acceptor>(io_);
  acc->open(ep.protocol(), ec);
  if (!ec) acc->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec && addr.is_v6()) acc->set_option(asio::ip::v6_only(true), ec);
  if (!ec) acc->bind(ep, ec);
  if (!ec) acc->listen(1024, ec);
  if (ec) throw std::runtime_error("portal " + name + ": cannot listen: " + ec.message());
  spdlog::info("listening on {}", name);
  accept(acc);
  acceptors_.emplace_back(name, std::move(acc));
}

bool Server::close_portal(const config::Portal& p) {
  const std::string name = p.to_string();
  for (auto it = acceptors_.begin(); it != acceptors_.end(); ++it) {
    if (it->first != name) continue;
    boost::system::error_code ec;
    it->second->close(ec);
    acceptors_.erase(it);
    spdlog::info("stopped listening on {}", name);
    return true;
  }
  return false;
}

void Server::accept(AcceptorPtr acceptor) {
  acceptor->async_accept([this, acceptor](boost::system::error_code ec, tcp::socket socket) {
    if (stopping_ || ec == asio::error::operation_aborted || !acceptor->is_open()) return;
    if (ec) {
      spdlog::warn("accept: {}", ec.message());
    } else {
      boost::system::error_code e1, e2;
      auto peer = socket.remote_endpoint(e1);
      auto local = socket.local_endpoint(e2);
      std::size_t open = 0;
      for (auto& w : workers_) open += w->connection_count();
      if (!e1 && !e2 && open >= cfg_.limits.max_connections) {
        // Accepted and closed at once: the peer sees the connection reset,
        // and a flood costs one log line per thousand.
        if (refused_connections_++ % 1000 == 0) {
          spdlog::warn(
              "connection from {} to {} closed: {} connections open "
              "(limits.max_connections; {} refused so far)",
              endpoint_string(peer), endpoint_string(local), open, refused_connections_);
        }
        socket.close(e1);
      } else if (!e1 && !e2) {
        socket.set_option(tcp::no_delay(true), e1);
        int fd = socket.release();
        Worker& w = *workers_[next_worker_++ % workers_.size()];
        w.adopt(fd, endpoint_string(peer), endpoint_string(local));
      }
    }
    accept(acceptor);
  });
}

namespace {
SessionInfo describe(const SocketConnection& c, unsigned worker) {
  SessionInfo s;
  const iscsi::Connection& p = c.protocol();
  s.connection_id = c.id();
  s.worker = worker;
  s.peer = c.peer();
  s.local = c.local();
  s.logged_in = p.full_feature();
  s.closing = c.closing();
  s.params = p.params();
  s.discovery = s.params.session_type == iscsi::SessionType::discovery;
  s.initiator = p.initiator_name();
  s.target = p.target_name();
  s.isid = p.isid();
  s.tsih = p.tsih();
  s.commands_in_flight = p.tasks_in_flight();
  s.bytes_in = c.bytes_in();
  s.bytes_out = c.bytes_out();
  return s;
}
}  // namespace

void Server::visit_sessions(SessionAction act, std::function<void(std::vector<SessionInfo>)> done) {
  struct Gather {
    std::vector<SessionInfo> found;
    std::vector<bool> answered;
    std::size_t pending = 0;
    std::function<void(std::vector<SessionInfo>)> done;
    std::unique_ptr<asio::steady_timer> timer;
    void finish() {
      if (!done) return;
      timer->cancel();
      auto d = std::move(done);
      done = nullptr;
      d(std::move(found));
    }
  };
  auto g = std::make_shared<Gather>();
  g->done = std::move(done);
  g->answered.assign(workers_.size(), false);
  g->pending = stopping_ ? 0 : workers_.size();
  g->timer = std::make_unique<asio::steady_timer>(io_, kGatherLimit);
  if (g->pending == 0) {
    g->finish();
    return;
  }
  g->timer->async_wait([g](boost::system::error_code ec) {
    if (ec) return;
    for (std::size_t i = 0; i < g->answered.size(); ++i)
      if (!g->answered[i]) spdlog::warn("admin: worker {} did not answer about its sessions", i);
    g->finish();
  });
  for (auto& w : workers_) {
    unsigned index = w->index();
    auto found = std::make_shared<std::vector<SessionInfo>>();
    w->visit_connections(
        [found, act, index](SocketConnection& c) {
          SessionInfo info = describe(c, index);
          if (act(c, info)) found->push_back(std::move(info));
        },
        [this, g, found, index] {
          asio::post(io_, [g, found, index] {
            if (!g->done || g->answered[index]) return;
            g->answered[index] = true;
            for (auto& f : *found) g->found.push_back(std::move(f));
            if (--g->pending == 0) g->finish();
          });
        });
  }
}

void Server::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  spdlog::info("shutting down: closing portals, finishing in-flight commands");
  for (auto& [name, a] : acceptors_) {
    boost::system::error_code ec;
    a->close(ec);
  }
  for (auto& w : workers_) w->drain_and_stop();
}

void Server::run() {
  io_.run();
}

}  // namespace ringtgt::net
