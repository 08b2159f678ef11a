#include "operations.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <limits>
#include <string>

#include "ringtgt/lun/copy_health.hpp"
#include "ringtgt/reactor/buffer_pool.hpp"
#include "ringtgt/storage/fault_injection.hpp"

namespace ringtgt::daemon {

std::shared_ptr<const metrics::Catalog> build_catalog(const net::TargetCatalog& catalog,
                                                      const net::Server& server) {
  auto cat = std::make_shared<metrics::Catalog>();
  const auto& targets = catalog.targets();
  const auto& counters = catalog.all_target_counters();
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const auto& t = *targets[i];
    cat->targets.push_back({t.name, i < counters.size() ? counters[i] : nullptr});
    const auto map = t.luns();
    for (std::uint64_t n : map->luns()) {
      auto lu = map->find(n);
      if (!lu) continue;
      cat->luns.push_back({t.name, n, lu->stats(), lu->backend().store_counters(), nullptr,
                           lu->backend().mirror_counters()});
      if (auto* f = dynamic_cast<const storage::FaultInjectingBackend*>(&lu->backend()))
        cat->luns.back().faults = f->plan().counters();
    }
  }
  for (const auto& w : server.workers()) {
    const net::Worker* worker = w.get();
    cat->workers.push_back({worker->index(), &w->reactor().counters(),
                            [worker] { return worker->connection_count(); }});
  }
  cat->buffer_memory_held = [] { return reactor::BufferPool::memory_held(); };
  if (std::size_t budget = reactor::BufferPool::memory_budget();
      budget != std::numeric_limits<std::size_t>::max())
    cat->buffer_memory_limit = budget;
  return cat;
}

SystemdNotifier::SystemdNotifier(boost::asio::io_context& io, const net::TargetCatalog& targets,
                                 const net::Server& server)
    : targets_(targets), server_(server), status_timer_(io), watchdog_timer_(io) {}

void SystemdNotifier::send_status(const char* prefix) {
  std::size_t sessions = 0;
  for (const auto& c : targets_.all_target_counters())
    sessions += static_cast<std::size_t>(c->sessions.load(std::memory_order_relaxed));
  std::size_t connections = 0;
  for (const auto& w : server_.workers()) connections += w->connection_count();
  std::string msg = std::string(prefix) + "STATUS=serving " +
                    std::to_string(targets_.targets().size()) + " targets, " +
                    std::to_string(sessions) + " sessions, " + std::to_string(connections) +
                    " connections" + degraded_luns();
  sd_notify(0, msg.c_str());
}

// "; DEGRADED: <target> LUN n: 1 of 3 copies out of sync (disk3)" for each
// mirrored LUN short of copies: `systemctl status` is where an operator looks
// first, and a LUN that survives nothing more must show there.
std::string SystemdNotifier::degraded_luns() const {
  std::string text;
  for (const auto& t : targets_.targets()) {
    const auto map = t->luns();
    for (std::uint64_t n : map->luns()) {
      auto lu = map->find(n);
      auto mirror = lu ? lu->backend().mirror_counters() : nullptr;
      if (!mirror) continue;
      if (auto what = lun::degraded_copies(*mirror)) {
        text += (text.empty() ? "; DEGRADED: " : "; ") + t->name + " LUN " + std::to_string(n) +
                ": " + *what;
      }
    }
  }
  return text;
}

void SystemdNotifier::ready() {
  send_status("READY=1\n");
  arm_status();
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    std::vector<const metrics::WorkerCounters*> hb;
    for (const auto& w : server_.workers()) hb.push_back(&w->reactor().counters());
    heartbeats_ = std::make_unique<metrics::HeartbeatCheck>(std::move(hb));
    // Half the limit, as sd_watchdog_enabled(3) advises, but never so often that a
    // healthy reactor (ticking every 250 ms) could miss a check.
    watchdog_interval_ =
        std::max(std::chrono::microseconds(usec / 2), std::chrono::microseconds(600'000));
    spdlog::info("systemd watchdog: {} ms; pinging every {} ms while every reactor ticks",
                 usec / 1000, watchdog_interval_.count() / 1000);
    arm_watchdog();
  }
}

void SystemdNotifier::stopping() {
  if (stopped_) return;
  stopped_ = true;
  status_timer_.cancel();
  watchdog_timer_.cancel();
  sd_notify(0, "STOPPING=1\nSTATUS=stopping: finishing in-flight commands");
}

void SystemdNotifier::arm_status() {
  status_timer_.expires_after(kStatusInterval);
  status_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    send_status("");
    arm_status();
  });
}

void SystemdNotifier::arm_watchdog() {
  watchdog_timer_.expires_after(watchdog_interval_);
  watchdog_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    auto stalled = heartbeats_->stalled();
    if (stalled.empty()) {
      sd_notify(0, "WATCHDOG=1");
      if (stall_logged_) spdlog::info("systemd watchdog: every reactor is ticking again");
      stall_logged_ = false;
    } else if (!stall_logged_) {
      std::string which;
      for (unsigned i : stalled) which += (which.empty() ? "" : ", ") + std::to_string(i);
      spdlog::error("reactor(s) {} stopped ticking; not pinging the systemd watchdog", which);
      stall_logged_ = true;
    }
    arm_watchdog();
  });
}

}  // namespace ringtgt::daemon
