// The admin methods: what ringtgtctl can ask and change, on the control-plane thread.
// Every change (an RPC or a reload) goes the same way: a candidate Config is built
// from the running one, validated by the config loader's rules, diffed against the
// running one (change_plan.hpp), and only the difference is applied; the candidate
// then becomes the running config. Changes are applied one at a time.
#pragma once

#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <string>

#include "ringtgt/admin/change_plan.hpp"
#include "ringtgt/admin/json_rpc.hpp"
#include "ringtgt/config/config.hpp"
#include "ringtgt/net/registry.hpp"
#include "ringtgt/net/server.hpp"

namespace ringtgt::admin {

class Service {
 public:
  Service(config::Config running, std::string version, net::Registry& registry,
          net::Server& server);

  const Dispatcher& dispatcher() const { return dispatcher_; }
  const config::Config& running() const { return running_; }
  // Once the server's reactors run: resumes the resyncs the mirrored LUNs'
  // state files ask for (docs/replication.md, "After a restart or a crash").
  // Then, until stop_background_work: watches the remote copies' connections
  // and resyncs a copy that connected again (resync_reconnected_copies).
  void start_background_work();
  // On shutdown: lets the control plane's io_context run out of work.
  void stop_background_work();
  // SIGHUP: the same as config.reload, with the outcome in the log only.
  void reload_from_signal();
  // Called on the control-plane thread after every change that was applied (e.g. to
  // give the metrics collector the new set of targets and LUNs).
  void on_applied(std::function<void()> f) { on_applied_ = std::move(f); }

 private:
  using Done = std::function<void(const json& result)>;
  using Fail = std::function<void(int code, const std::string& message)>;

  void add_methods();
  void watch_copy_connections();
  // Runs fn on one of the reactors (key spreads the work over them).
  void post_to_reactor(std::uint64_t key, std::function<void()> fn);
  // Runs job once every change queued before it is done; job calls release when done.
  void exclusive(std::function<void(std::function<void()> release)> job);
  void run_next();
  struct ChangeOptions {
    bool force = false;  // also when a session uses a target whose LUNs go away or change
    // Apply a weaker write acknowledgement under logged-in sessions (ChangeStep::weakens_ack)
    // instead of deferring it.
    bool weaken_under_sessions = false;
    bool from_file = false;  // next was loaded (and so validated) from the config file
  };
  // Validates next and applies its difference from the running config.
  void change(config::Config next, ChangeOptions options, Done done, Fail fail);
  // Decides, knowing the logged-in sessions, what of the plan is applied, and applies it.
  void apply_or_refuse(ChangePlan plan, config::Config next, ChangeOptions options,
                       const std::vector<net::SessionInfo>& sessions, Done done,
                       std::function<void(int, const std::string&)> fail);
  json apply(const ChangePlan& plan, const config::Config& next);
  void reload(bool weaken_under_sessions, Done done, Fail fail);

  config::Target& target_of(config::Config& c, const std::string& name);

  config::Config running_;
  std::uint64_t generation_ = 0;  // changes applied so far
  std::string version_;
  net::Registry& registry_;
  net::Server& server_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  Dispatcher dispatcher_;
  std::deque<std::function<void(std::function<void()>)>> queue_;
  bool busy_ = false;
  std::function<void()> on_applied_;
  boost::asio::steady_timer copy_watch_;
  bool background_stopped_ = false;
};

}  // namespace ringtgt::admin
