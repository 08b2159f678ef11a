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
  for (const auto& p : cfg_.portals) {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(p.host, ec);
    if (ec) throw std::runtime_error("portal " + p.to_string() + ": " + ec.message());
    tcp::endpoint ep(addr, p.port);
    auto acc = std::make_unique<tcp::acceptor>(io_);
    acc->open(ep.protocol(), ec);
    if (!ec) acc->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec && addr.is_v6()) acc->set_option(asio::ip::v6_only(true), ec);
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(1024, ec);
    if (ec)
      throw std::runtime_error("portal " + p.to_string() + ": cannot listen: " + ec.message());
    spdlog::info("listening on {}", p.to_string());
    accept(*acc);
    acceptors_.push_back(std::move(acc));
  }
}

void Server::accept(tcp::acceptor& acceptor) {
  acceptor.async_accept([this, &acceptor](boost::system::error_code ec, tcp::socket socket) {
    if (stopping_) return;
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

void Server::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  spdlog::info("shutting down: closing portals, finishing in-flight commands");
  for (auto& a : acceptors_) {
    boost::system::error_code ec;
    a->close(ec);
  }
  for (auto& w : workers_) w->drain_and_stop();
}

void Server::run() {
  io_.run();
}

}  // namespace ringtgt::net
