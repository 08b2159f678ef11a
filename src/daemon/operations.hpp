// The daemon's operations side: what /metrics reports, and what systemd is told.
#pragma once

#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "ringtgt/metrics/collector.hpp"
#include "ringtgt/metrics/watchdog.hpp"
#include "ringtgt/net/server.hpp"
#include "ringtgt/net/target_catalog.hpp"

namespace ringtgt::daemon {

// Every LUN, target and worker of a running server, for the collector.
std::shared_ptr<const metrics::Catalog> build_catalog(const net::TargetCatalog& targets,
                                                      const net::Server& server);

// sd_notify beyond READY=1: STATUS= every few seconds ("serving N targets, M
// sessions", and which mirrored LUNs are short of copies) and, when systemd asks for a watchdog
// (WatchdogSec=), WATCHDOG=1 only while every reactor's heartbeat advances. Runs on the control
// thread.
class SystemdNotifier {
 public:
  SystemdNotifier(boost::asio::io_context& io, const net::TargetCatalog& targets,
                  const net::Server& server);
  // Sends READY=1 with the first STATUS= and starts the timers.
  void ready();
  // Sends STOPPING=1 and stops the timers.
  void stopping();

 private:
  void send_status(const char* prefix);
  std::string degraded_luns() const;
  void arm_status();
  void arm_watchdog();

  const net::TargetCatalog& targets_;
  const net::Server& server_;
  boost::asio::steady_timer status_timer_;
  boost::asio::steady_timer watchdog_timer_;
  std::unique_ptr<metrics::HeartbeatCheck> heartbeats_;
  std::chrono::microseconds watchdog_interval_{0};
  bool stopped_ = false;
  bool stall_logged_ = false;
  static constexpr std::chrono::seconds kStatusInterval{5};
};

}  // namespace ringtgt::daemon
