// ringtgt: the daemon's entry point: arguments, config, wiring, signals.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <utility>

#include <boost/asio/signal_set.hpp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "durability_testing.hpp"
#include "operations.hpp"
#include "ringtgt/admin/admin_server.hpp"
#include "ringtgt/admin/service.hpp"
#include "ringtgt/config/config.hpp"
#include "ringtgt/lun/lun_factory.hpp"
#include "ringtgt/net/registry.hpp"
#include "ringtgt/net/server.hpp"
#include "ringtgt/reactor/reactor.hpp"
#include "ringtgt/storage/rbd_backend.hpp"
#include "waiting_luns.hpp"

namespace {

void usage(std::FILE* out) {
  std::fprintf(out,
               "Usage: ringtgt --config FILE [--log-level LEVEL]\n"
               "       ringtgt --check-config --config FILE\n"
               "       ringtgt --version | --help\n\n"
               "Serves the iSCSI targets described in FILE (TOML).\n"
               "  --config FILE       configuration file (see conf/demo.toml)\n"
               "  --log-level LEVEL   trace, debug, info, warn, error, critical, off\n"
               "                      (overrides log_level in the config)\n"
               "  --check-config      parse and validate FILE (secret files included), open\n"
               "                      no device, bind no port; exit 0 if valid, 1 if not\n"
               "  --version           print the version and exit\n"
               "  --help              print this help and exit\n\n"
               "Signals: SIGTERM/SIGINT finish in-flight I/O and exit; SIGHUP reloads FILE\n"
               "(only the differences are applied; an invalid file is refused whole).\n"
               "Administration: ringtgtctl, over the [admin] socket.\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path, log_level;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ringtgt: %s needs a value\n", name);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--config" || a == "-c")
      config_path = value("--config");
    else if (a.rfind("--config=", 0) == 0)
      config_path = a.substr(9);
    else if (a == "--log-level")
      log_level = value("--log-level");
    else if (a.rfind("--log-level=", 0) == 0)
      log_level = a.substr(12);
    else if (a == "--check-config")
      check_only = true;
    else if (a == "--version") {
      std::printf("ringtgt %s\n", RINGTGT_VERSION);
      return 0;
    } else if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "ringtgt: unknown argument '%s'\n\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "ringtgt: --config FILE is required\n\n");
    usage(stderr);
    return 2;
  }

  spdlog::set_default_logger(spdlog::stderr_color_mt("ringtgt"));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");

  ringtgt::config::Config cfg;
  try {
    cfg = ringtgt::config::load_file(config_path);
  } catch (const ringtgt::config::ConfigError& e) {
    std::fprintf(stderr, "ringtgt: config error: %s\n", e.what());
    return 1;
  }
  if (check_only) {
    std::printf(
        "%s: OK (%zu portals, %zu targets%s)\n", config_path.c_str(), cfg.portals.size(),
        cfg.targets.size(),
        cfg.metrics.listen ? (", metrics on " + cfg.metrics.listen->to_string()).c_str() : "");
    return 0;
  }
  std::string level = log_level.empty() ? cfg.log_level : log_level;
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    std::fprintf(stderr, "ringtgt: unknown log level '%s'\n", level.c_str());
    return 2;
  }
  spdlog::set_level(lvl);
  spdlog::info("ringtgt {} starting with {}", RINGTGT_VERSION, config_path);

  std::string uring = ringtgt::reactor::Reactor::probe_description();
  if (uring.rfind("io_uring unavailable", 0) == 0) {
    spdlog::critical("{}: ringtgt needs io_uring for its data path", uring);
    return 1;
  }
  spdlog::info("{}", uring);

  // The state folder holds the demo's sparse LUN files, APTPL reservation files and,
  // by default in the demo, the admin socket: make it on first start.
  std::error_code ec;
  std::filesystem::create_directories(cfg.state_dir, ec);
  if (ec) {
    spdlog::critical("cannot create state_dir {}: {}", cfg.state_dir, ec.message());
    return 1;
  }

  // Tests only: declared before the server so that it outlives every worker.
  std::unique_ptr<ringtgt::storage::DurabilityLog> durability_log;
  try {
    if (cfg.fault_testing.fault_injection) {
      spdlog::warn(
          "[testing] fault_injection = true: THIS DAEMON IS FOR TESTS. Every LUN can be made to "
          "fail reads, writes and flushes on request (ringtgtctl fault); never use it for data "
          "you want to keep");
    }
    durability_log = ringtgt::daemon::start_durability_testing(cfg);
    // Every LUN, at start and in every live change, comes from this one factory.
    const ringtgt::lun::LunFactory luns(cfg.state_dir,
                                        ringtgt::net::resolve_worker_count(cfg.workers),
                                        cfg.fault_testing.fault_injection);
    // An RBD LUN whose image cannot open at start waits for it, NOT READY.
    ringtgt::daemon::WaitingLuns waiting(luns);
    ringtgt::net::Registry registry(
        cfg, [&waiting](const std::string& target, const ringtgt::config::Lun& l) {
          return waiting.open(target, l);
        });
    ringtgt::net::Server server(cfg, registry);
    // The retries post to the server's io_context: they end before it goes.
    struct StopRetries {
      ringtgt::daemon::WaitingLuns& w;
      ~StopRetries() { w.stop(); }
    } stop_retries{waiting};
    ringtgt::daemon::SystemdNotifier notifier(server.io(), registry.catalog(), server);
    ringtgt::admin::Service admin(cfg, RINGTGT_VERSION, registry, server);
    ringtgt::admin::AdminServer admin_socket(server.io(), admin.dispatcher());
    // Signals are caught before the portals open, so a SIGTERM that comes
    // as soon as the port answers still drains and exits cleanly.
    boost::asio::signal_set signals(server.io(), SIGINT, SIGTERM, SIGHUP);
    std::function<void(const boost::system::error_code&, int)> on_signal =
        [&](const boost::system::error_code& ec, int sig) {
          if (ec) return;
          if (sig == SIGHUP) {
            spdlog::info("SIGHUP: reloading the configuration");
            admin.reload_from_signal();
            signals.async_wait(on_signal);
            return;
          }
          spdlog::info("received {}", strsignal(sig));
          notifier.stopping();
          admin.stop_background_work();
          admin_socket.stop();
          server.shutdown();
        };
    signals.async_wait(on_signal);
    server.start();
    admin.start_background_work();
    std::shared_ptr<ringtgt::metrics::Collector> collector;
    std::unique_ptr<ringtgt::metrics::Endpoint> metrics_endpoint;
    if (cfg.metrics.listen) {
      collector = std::make_shared<ringtgt::metrics::Collector>();
      collector->set_catalog(ringtgt::daemon::build_catalog(registry.catalog(), server));
      metrics_endpoint =
          std::make_unique<ringtgt::metrics::Endpoint>(cfg.metrics.listen->to_string(), collector);
      spdlog::info("metrics on http://{}/metrics", cfg.metrics.listen->to_string());
      // Targets and LUNs added or removed live are scraped from then on.
      admin.on_applied([&] {
        collector->set_catalog(ringtgt::daemon::build_catalog(registry.catalog(), server));
      });
    }
    waiting.start(server.io(), registry, [&] {
      if (collector)
        collector->set_catalog(ringtgt::daemon::build_catalog(registry.catalog(), server));
    });
    try {
      admin_socket.start(cfg.admin.socket, cfg.admin.group);
    } catch (const std::exception& e) {
      // The targets matter more than the admin socket: serve them anyway.
      spdlog::error(
          "{}; serving without it (ringtgtctl and config.reload unavailable; "
          "SIGHUP still reloads)",
          e.what());
    }
    spdlog::info("{} workers, {} targets; ready", server.worker_count(),
                 registry.catalog().targets().size());
    notifier.ready();
    server.run();
  } catch (const ringtgt::reactor::IoUringUnavailable& e) {
    spdlog::critical("{}", e.what());
    return 1;
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return 1;
  }
  // Images whose last LU went on a reactor close on threads of their own.
  ringtgt::storage::RbdBackend::wait_for_background_closes();
  if (durability_log) {
    durability_log->flush();
    spdlog::info("durability log {} written", durability_log->path());
  }
  spdlog::info("stopped");
  return 0;
}
