#include "ringtgt/admin/service.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "copy_methods.hpp"
#include "fault_methods.hpp"
#include "ringtgt/common/atomic_file.hpp"
#include "ringtgt/metrics/collector.hpp"
#include "ringtgt/storage/backend.hpp"
#include "ringtgt/storage/mirrored_backend.hpp"

namespace ringtgt::admin {

namespace asio = boost::asio;
using Kind = ChangeStep::Kind;

namespace {

// Calls f(target entry, its LUN map, LUN number, LU) for every LU served, of the
// target named `only` or of all targets.
template <typename F>
void for_each_lu(const net::TargetCatalog& catalog, const std::optional<std::string>& only, F&& f) {
  for (const auto& entry : catalog.targets()) {
    if (only && entry->name != *only) continue;
    auto map = entry->luns();
    for (auto n : map->luns())
      if (auto lu = map->find(n)) f(*entry, *map, n, *lu);
  }
}

// The message of a ConfigError without its "file:line:col: " (the location is in
// generated text, meaningless to whoever sent the RPC).
std::string bare_message(const config::ConfigError& e) {
  std::string prefix =
      e.file() + ":" + std::to_string(e.line()) + ":" + std::to_string(e.column()) + ": ";
  std::string w = e.what();
  return w.rfind(prefix, 0) == 0 ? w.substr(prefix.size()) : w;
}

std::string isid_hex(std::uint64_t isid) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%012llx", static_cast<unsigned long long>(isid));
  return buf;
}

json session_json(const net::SessionInfo& s) {
  const auto& p = s.params;
  json j{{"connection_id", s.connection_id},
         {"worker", s.worker},
         {"peer", s.peer},
         {"local", s.local},
         {"logged_in", s.logged_in},
         {"closing", s.closing},
         {"type", s.discovery ? "discovery" : "normal"},
         {"initiator", s.initiator},
         {"target", s.target},
         {"isid", isid_hex(s.isid)},
         {"tsih", s.tsih},
         {"commands_in_flight", s.commands_in_flight},
         {"bytes_in", s.bytes_in},
         {"bytes_out", s.bytes_out}};
  if (s.logged_in) {
    j["negotiated"] = {
        {"HeaderDigest", p.header_digest ? "CRC32C" : "None"},
        {"DataDigest", p.data_digest ? "CRC32C" : "None"},
        {"InitialR2T", p.initial_r2t},
        {"ImmediateData", p.immediate_data},
        {"MaxRecvDataSegmentLength", p.target_max_recv_data_segment_length},
        {"InitiatorMaxRecvDataSegmentLength", p.initiator_max_recv_data_segment_length},
        {"MaxBurstLength", p.max_burst_length},
        {"FirstBurstLength", p.first_burst_length},
        {"MaxOutstandingR2T", p.max_outstanding_r2t},
        {"DefaultTime2Wait", p.default_time2wait},
        {"DefaultTime2Retain", p.default_time2retain},
        {"ErrorRecoveryLevel", p.error_recovery_level}};
  }
  return j;
}

// A JSON parameter as a TOML value: scalars and arrays read the same; an object
// (the rbd table) becomes an inline table.
std::string toml_value(const nlohmann::json& value) {
  if (!value.is_object()) return value.dump();
  std::string t = "{";
  for (const auto& [key, v] : value.items())
    t += (t.size() > 1 ? ", " : " ") + nlohmann::json(key).dump() + " = " + toml_value(v);
  return t + " }";
}

// The LUN that lun.add's parameters describe, by the config file's rules for a
// [[target.lun]] (config::load_lun): each parameter but "target" is written as that
// table's key ("lun" is its "number"), and a JSON scalar or array of strings reads
// the same as TOML, so the two cannot drift apart.
config::Lun lun_from_params(const Params& p) {
  std::string table;
  for (const auto& [key, value] : p.raw().items()) {
    if (key == "target") continue;
    table += (key == "lun" ? std::string("number") : key) + " = " + toml_value(value) + "\n";
  }
  try {
    return config::load_lun(table, "lun.add");
  } catch (const config::ConfigError& e) {
    throw RpcError(rpc_error::invalid_params, bare_message(e));
  }
}

void add_unique(std::vector<std::string>& v, const std::string& s) {
  if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
}

}  // namespace

Service::Service(config::Config running, std::string version, net::Registry& registry,
                 net::Server& server)
    : running_(std::move(running)),
      version_(std::move(version)),
      registry_(registry),
      server_(server),
      copy_watch_(server.io()) {
  add_methods();
}

void Service::start_background_work() {
  resume_resyncs(registry_.catalog(), std::bind_front(&Service::post_to_reactor, this));
  watch_copy_connections();
}

void Service::stop_background_work() {
  background_stopped_ = true;
  copy_watch_.cancel();
}

void Service::watch_copy_connections() {
  // As often as a copy first retries its connection: one that is back
  // resyncs soon after.
  copy_watch_.expires_after(std::chrono::milliseconds(200));
  copy_watch_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || background_stopped_) return;
    resync_reconnected_copies(registry_.catalog(),
                              std::bind_front(&Service::post_to_reactor, this));
    watch_copy_connections();
  });
}

void Service::post_to_reactor(std::uint64_t key, std::function<void()> fn) {
  const auto& workers = server_.workers();
  if (workers.empty()) throw RpcError(rpc_error::refused, "the reactors are not running yet");
  workers[key % workers.size()]->reactor().post(std::move(fn));
}

config::Target& Service::target_of(config::Config& c, const std::string& name) {
  for (auto& t : c.targets)
    if (t.name == name) return t;
  throw RpcError(rpc_error::invalid_params,
                 "no target named " + name + " (ringtgtctl target list shows them)");
}

namespace {

// writeback -> writethrough: the new LU acknowledges nothing from cache, but what the old
// one acknowledged may still sit in the page cache of its file. fdatasync flushes the
// file's dirty pages whoever wrote them, so it runs once the new LU serves. Writes the old
// LU still completes after it were made to a disk the initiator sees as write-back, and
// so are covered by the SYNCHRONIZE CACHE it sends before relying on them.
void flush_what_writeback_left(const ChangeStep& s, const config::Config& running) {
  std::string path = s.lun_cfg.path;
  for (const auto& t : running.targets)
    if (t.name == s.target)
      for (const auto& l : t.luns)
        if (l.number == s.lun) path = l.path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fdatasync(fd) != 0) {
    spdlog::error(
        "admin: target {} LUN {}: flushing what writeback left cached in {} failed: "
        "{}; those writes may not be durable",
        s.target, s.lun, path, std::strerror(errno));
  } else {
    spdlog::info(
        "admin: target {} LUN {}: write_ack writeback -> writethrough: cached writes "
        "flushed; every write is durable before GOOD from now on",
        s.target, s.lun);
  }
  if (fd >= 0) ::close(fd);
}

// The mirrored LUNs a change replaces or removes, with their LUs held.
std::vector<std::shared_ptr<scsi::LogicalUnit>> mirrored_luns_going(const net::TargetCatalog& c,
                                                                    const ChangePlan& plan) {
  std::vector<std::shared_ptr<scsi::LogicalUnit>> out;
  auto add = [&out](std::shared_ptr<scsi::LogicalUnit> lu) {
    if (lu && dynamic_cast<storage::MirroredBackend*>(&lu->backend())) out.push_back(std::move(lu));
  };
  for (const auto& s : plan.steps) {
    if (s.kind != Kind::remove_target && s.kind != Kind::remove_lun && s.kind != Kind::replace_lun)
      continue;
    auto entry = c.find_target(s.target);
    if (!entry) continue;
    if (s.kind != Kind::remove_target) {
      add(entry->luns()->find(s.lun));
      continue;
    }
    for (std::uint64_t n : entry->luns()->luns()) add(entry->luns()->find(n));
  }
  return out;
}

storage::MirroredBackend& mirror_of(scsi::LogicalUnit& lu) {
  return static_cast<storage::MirroredBackend&>(lu.backend());
}

void hold_early_answers(const std::vector<std::shared_ptr<scsi::LogicalUnit>>& going, bool hold) {
  for (const auto& lu : going) mirror_of(*lu).hold_early_answers(hold);
}

// The resyncs settle_writes_behind stopped: copy numbers of each LU.
using StoppedResyncs = std::vector<std::pair<std::shared_ptr<scsi::LogicalUnit>, std::size_t>>;

// A change that stopped them and then was not made starts them again.
void restart_resyncs(const StoppedResyncs& stopped,
                     const std::function<void(std::uint64_t, std::function<void()>)>& run) {
  for (const auto& [lu, i] : stopped) {
    storage::MirroredBackend* m = &mirror_of(*lu);
    if (!m->begin_resync(i).empty()) continue;
    run(i, [m, i, lu] { m->run_resync(i, lu); });
  }
}

// A mirrored LUN answers writes before its slower copies hold them
// (docs/replication.md). Before a reload hands its copies to a new LU, those
// writes must have landed: the new LU's next write to the same blocks could
// otherwise reach a copy first and be overwritten by the older one. So must
// a resync's region in flight (the new LU resumes the resync). They are
// bounded by the copies' command_timeout; a change that would wait longer
// is refused, not made in part.
StoppedResyncs settle_writes_behind(
    const std::vector<std::shared_ptr<scsi::LogicalUnit>>& going,
    const std::function<void(std::uint64_t, std::function<void()>)>& run) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  hold_early_answers(going, true);
  StoppedResyncs stopped;
  for (const auto& lu : going) {
    for (std::size_t i : mirror_of(*lu).stop_resyncs()) stopped.emplace_back(lu, i);
  }
  for (const auto& lu : going) {
    while (!mirror_of(*lu).nothing_behind() || !mirror_of(*lu).resyncs_stopped()) {
      if (std::chrono::steady_clock::now() > until) {
        hold_early_answers(going, false);
        restart_resyncs(stopped, run);
        throw RpcError(rpc_error::refused,
                       "a copy of a mirrored LUN this change replaces or removes still has writes "
                       "behind after 30 s (ringtgtctl copy list shows them); try again");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  return stopped;
}

}  // namespace

void Service::exclusive(std::function<void(std::function<void()>)> job) {
  queue_.push_back(std::move(job));
  if (!busy_) run_next();
}

void Service::run_next() {
  if (queue_.empty()) {
    busy_ = false;
    return;
  }
  busy_ = true;
  auto job = std::move(queue_.front());
  queue_.pop_front();
  job([this] { asio::post(server_.io(), [this] { run_next(); }); });
}

void Service::change(config::Config next, ChangeOptions options, Done done, Fail fail) {
  exclusive([this, next = std::move(next), options, done,
             fail](std::function<void()> release) mutable {
    auto finish_fail = [fail, release](int code, const std::string& m) {
      fail(code, m);
      release();
    };
    auto finish_done = [done, release](const json& r) {
      done(r);
      release();
    };
    config::Config valid;
    try {
      valid = options.from_file ? std::move(next) : config::validate(next);
    } catch (const config::ConfigError& e) {
      return finish_fail(rpc_error::invalid_params, bare_message(e));
    }
    valid.source = running_.source;
    ChangePlan plan = plan_changes(running_, valid);
    const bool removes_or_replaces =
        std::any_of(plan.steps.begin(), plan.steps.end(), [](const ChangeStep& s) {
          return s.kind == Kind::remove_target || s.kind == Kind::remove_lun ||
                 s.kind == Kind::replace_lun;
        });
    const bool weakens = std::any_of(plan.steps.begin(), plan.steps.end(),
                                     [](const ChangeStep& s) { return !s.weakens_ack.empty(); });
    // A weakening needs the sessions either way: to defer it, or to warn whom it affects.
    const bool ask_sessions = (removes_or_replaces && !options.force) || weakens;
    if (!ask_sessions)
      return apply_or_refuse(std::move(plan), std::move(valid), options, {}, finish_done,
                             finish_fail);
    server_.visit_sessions(
        [](net::SocketConnection&, const net::SessionInfo&) { return true; },
        [this, plan = std::move(plan), valid = std::move(valid), options, finish_done,
         finish_fail](std::vector<net::SessionInfo> sessions) mutable {
          apply_or_refuse(std::move(plan), std::move(valid), options, sessions, finish_done,
                          finish_fail);
        });
  });
}

void Service::apply_or_refuse(ChangePlan plan, config::Config next, ChangeOptions options,
                              const std::vector<net::SessionInfo>& sessions, Done done,
                              std::function<void(int, const std::string&)> fail) {
  std::map<std::string, std::vector<std::string>> users;  // target -> its logged-in sessions
  for (const auto& s : sessions)
    if (s.logged_in) users[s.target].push_back(s.initiator + " from " + s.peer);
  if (!options.weaken_under_sessions) {
    std::set<std::string> in_use;
    for (const auto& [t, who] : users) in_use.insert(t);
    defer_ack_weakening(plan, next, running_, in_use);
    for (const auto& d : plan.deferred) spdlog::warn("admin: {}", d);
  }
  std::set<std::string> touched;  // targets whose LUNs go away or change under sessions
  std::set<std::string> removed;
  for (const auto& s : plan.steps) {
    if (s.kind == Kind::remove_target) removed.insert(s.target);
    if (s.kind == Kind::remove_target || s.kind == Kind::remove_lun || s.kind == Kind::replace_lun)
      touched.insert(s.target);
    if (!s.weakens_ack.empty() && users.contains(s.target)) {
      spdlog::warn(
          "admin: {} applied under {} logged-in session(s) of target {}: their writes "
          "are no longer durable at GOOD, and they keep treating the disk as "
          "write-through (no SYNCHRONIZE CACHE, no FUA) until they rescan or log in "
          "again",
          s.weakens_ack, users[s.target].size(), s.target);
    }
  }
  if (!options.force) {
    std::string msg;
    for (const auto& [t, who] : users) {
      if (!touched.contains(t)) continue;
      msg += (msg.empty() ? "" : "; ") + std::string("target ") + t + " is in use by " +
             std::to_string(who.size()) + " session(s) (";
      for (std::size_t i = 0; i < who.size(); ++i) msg += (i ? ", " : "") + who[i];
      msg += ")";
    }
    if (!msg.empty()) {
      spdlog::warn("admin: change refused: {}", msg);
      return fail(rpc_error::refused,
                  msg + ": close them first (ringtgtctl session close) or use --force");
    }
  }
  json result;
  try {
    result = apply(plan, next);
  } catch (const RpcError& e) {
    return fail(e.code, e.what());
  } catch (const std::exception& e) {
    spdlog::warn("admin: change refused: {}", e.what());
    return fail(rpc_error::refused, e.what());
  }
  if (!removed.empty()) {
    server_.visit_sessions(
        [removed](net::SocketConnection& c, const net::SessionInfo& s) {
          if (!removed.contains(s.target)) return false;
          c.close("target removed by the administrator");
          return true;
        },
        [](std::vector<net::SessionInfo> closed) {
          for (const auto& s : closed)
            spdlog::info("admin: closed session of {} to removed target {}", s.initiator, s.target);
        });
  }
  done(result);
}

json Service::apply(const ChangePlan& plan, const config::Config& next) {
  // Prepare everything that can fail (open backing stores, bind portals, grow files)
  // before anything serves: a change that cannot be made in full is not made at all.
  std::map<std::pair<std::string, std::uint32_t>, std::shared_ptr<scsi::LogicalUnit>> opened;
  std::vector<config::Portal> bound;
  bool portals_changed = false;
  const auto going = mirrored_luns_going(registry_.catalog(), plan);
  const auto run = std::bind_front(&Service::post_to_reactor, this);
  const StoppedResyncs stopped = settle_writes_behind(going, run);
  try {
    for (const auto& s : plan.steps) {
      switch (s.kind) {
        case Kind::add_portal:
          server_.open_portal(s.portal);
          bound.push_back(s.portal);
          portals_changed = true;
          break;
        case Kind::add_target:
          for (const auto& l : s.target_cfg.luns)
            opened[{s.target, l.number}] = registry_.open_lun(s.target, l);
          break;
        case Kind::add_lun:
        case Kind::replace_lun:
          opened[{s.target, s.lun}] = registry_.open_lun(s.target, s.lun_cfg);
          break;
        default:
          break;
      }
    }
    for (const auto& s : plan.steps)
      if (s.kind == Kind::resize_lun)
        registry_.catalog().resize_lun(s.target, s.lun, *s.lun_cfg.size);
  } catch (...) {
    for (const auto& p : bound) server_.close_portal(p);
    hold_early_answers(going, false);
    opened.clear();  // a dropped replacement gives the state file back first
    restart_resyncs(stopped, run);
    throw;
  }

  json applied = json::array();
  for (const auto& s : plan.steps) {
    switch (s.kind) {
      case Kind::add_portal:
      case Kind::resize_lun:
        break;  // done above
      case Kind::remove_portal:
        server_.close_portal(s.portal);
        portals_changed = true;
        break;
      case Kind::add_target: {
        std::map<std::uint32_t, std::shared_ptr<scsi::LogicalUnit>> luns;
        for (const auto& l : s.target_cfg.luns) luns[l.number] = opened[{s.target, l.number}];
        registry_.catalog().add_target(s.target_cfg, std::move(luns));
        break;
      }
      case Kind::remove_target:
        registry_.catalog().remove_target(s.target);
        break;
      case Kind::set_target_initiators:
        registry_.catalog().set_target_initiators(s.target, s.target_cfg.allowed_initiators);
        break;
      case Kind::set_target_chap:
        registry_.catalog().set_target_chap(s.target, s.target_cfg.chap);
        break;
      case Kind::add_lun:
        registry_.catalog().put_lun(s.target, s.lun_cfg, opened[{s.target, s.lun}]);
        break;
      case Kind::replace_lun:
        registry_.catalog().put_lun(s.target, s.lun_cfg, opened[{s.target, s.lun}]);
        if (s.strengthens_ack) flush_what_writeback_left(s, running_);
        break;
      case Kind::remove_lun:
        registry_.catalog().remove_lun(s.target, s.lun);
        break;
      case Kind::set_lun_initiators:
        registry_.catalog().set_lun_initiators(s.target, s.lun, s.lun_cfg.allowed_initiators);
        break;
    }
    spdlog::info("admin: {}", s.description);
    applied.push_back(s.description);
  }
  if (portals_changed) registry_.catalog().set_portals(next.portals);
  for (const auto& n : plan.needs_restart) spdlog::warn("admin: not applied: {}", n);
  running_ = next;
  ++generation_;
  // The LUs it opened resume what their state file left to resync.
  if (!background_stopped_) resume_resyncs(registry_.catalog(), run);
  if (on_applied_) on_applied_();
  return json{
      {"applied", applied}, {"needs_restart", plan.needs_restart}, {"deferred", plan.deferred}};
}

void Service::reload(bool weaken_under_sessions, Done done, Fail fail) {
  config::Config next;
  try {
    next = config::load_file(running_.source);
  } catch (const config::ConfigError& e) {
    spdlog::error("reload refused, the running configuration stays: {}", e.what());
    return fail(rpc_error::config_invalid,
                std::string(e.what()) + " (reload refused; the running configuration stays)");
  }
  spdlog::info("reloading {}", running_.source);
  // The file is the operator's intent: LUNs and targets it drops go even when in use. A
  // weaker acknowledgement waits for the sessions that were promised the stronger one.
  change(std::move(next),
         {.force = true, .weaken_under_sessions = weaken_under_sessions, .from_file = true},
         std::move(done), std::move(fail));
}

void Service::reload_from_signal() {
  reload(
      false,
      [](const json& r) {
        spdlog::info("reload done: {} change(s) applied, {} left for a restart",
                     r["applied"].size(), r["needs_restart"].size());
      },
      [](int, const std::string& m) { spdlog::error("reload failed: {}", m); });
}

void Service::add_methods() {
  auto& d = dispatcher_;
  add_fault_methods(d, registry_.catalog(), running_.fault_testing.fault_injection);
  add_copy_methods(d, {.registry = registry_.catalog(),
                       .run = std::bind_front(&Service::post_to_reactor, this),
                       .reactor_count = [this] { return server_.workers().size(); },
                       .running = running_,
                       .io = server_.io(),
                       .exclusive = [this](auto job) { exclusive(std::move(job)); }});

  d.add("version", [this](const Params& p, const Responder& r) {
    p.only({});
    auto up = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                               started_);
    r.ok({{"version", version_},
          {"uptime_seconds", up.count()},
          {"pid", ::getpid()},
          {"config", running_.source},
          {"workers", server_.worker_count()}});
  });

  // ---------------------------------------------------------------- lists
  d.add("target.list", [this](const Params& p, const Responder& r) {
    p.only({});
    server_.visit_sessions(
        [](net::SocketConnection&, const net::SessionInfo& s) { return s.logged_in; },
        [this, r](std::vector<net::SessionInfo> sessions) {
          json out = json::array();
          for (const auto& t : running_.targets) {
            std::size_t n = std::count_if(sessions.begin(), sessions.end(),
                                          [&](const auto& s) { return s.target == t.name; });
            out.push_back({{"name", t.name},
                           {"alias", t.alias},
                           {"luns", t.luns.size()},
                           {"sessions", n},
                           {"chap", t.chap.has_value()},
                           {"allowed_initiators", t.allowed_initiators}});
          }
          r.ok(out);
        });
  });

  d.add("lun.list", [this](const Params& p, const Responder& r) {
    p.only({"target"});
    auto only = p.optional_string("target");
    if (only) target_of(running_, *only);
    json out = json::array();
    for_each_lu(registry_.catalog(), only,
                [&](const iscsi::TargetEntry& entry, const scsi::LunMap& map, std::uint64_t n,
                    scsi::LogicalUnit& lu) {
                  json j{{"target", entry.name},
                         {"lun", n},
                         {"path", lu.backend().describe()},
                         {"size", lu.backend().size_bytes()},
                         {"block_size", lu.params().block_size},
                         {"physical_block_size", lu.params().physical_block_size()},
                         {"max_transfer", lu.params().max_transfer_bytes},
                         {"blocks", lu.block_count()},
                         {"write_ack", storage::to_string(lu.backend().ack_policy())},
                         {"read_only", lu.params().read_only},
                         {"allow_sanitize", lu.params().allow_sanitize},
                         {"sanitizing", lu.sanitizing()},
                         {"state", lu.backend().state()},
                         {"allowed_initiators", map.allowed_initiators(n)}};
                  for (const auto& t : running_.targets)
                    if (t.name == entry.name)
                      for (const auto& l : t.luns)
                        if (l.number == n && l.direct_io) j["direct_io"] = *l.direct_io;
                  out.push_back(j);
                });
    r.ok(out);
  });

  // Per-LUN counters since start: the sums over workers of what /metrics exports
  // (metrics::aggregate), so both always agree.
  d.add("lun.stats", [this](const Params& p, const Responder& r) {
    p.only({"target"});
    auto only = p.optional_string("target");
    if (only) target_of(running_, *only);
    json out = json::array();
    for_each_lu(registry_.catalog(), only,
                [&](const iscsi::TargetEntry& entry, const scsi::LunMap&, std::uint64_t n,
                    scsi::LogicalUnit& lu) {
                  if (!lu.stats()) return;
                  const metrics::LunTotals t = metrics::aggregate(*lu.stats());
                  json ops = json::object(), bytes = json::object(), errors = json::object();
                  std::uint64_t error_total = 0;
                  for (std::size_t k = 0; k < metrics::kOpKinds; ++k) {
                    const char* kind = metrics::to_string(static_cast<metrics::OpKind>(k));
                    ops[kind] = t.kinds[k].operations;
                    bytes[kind] = t.kinds[k].bytes;
                  }
                  for (std::size_t e = 0; e < metrics::kErrorReasons; ++e) {
                    if (t.errors[e] == 0) continue;
                    errors[metrics::error_reason_name(e)] = t.errors[e];
                    error_total += t.errors[e];
                  }
                  out.push_back({{"target", entry.name},
                                 {"lun", n},
                                 {"operations", ops},
                                 {"bytes", bytes},
                                 {"errors", errors},
                                 {"reads", ops["read"]},
                                 {"writes", ops["write"]},
                                 {"read_bytes", bytes["read"]},
                                 {"write_bytes", bytes["write"]},
                                 {"error_total", error_total},
                                 {"in_flight", t.in_flight}});
                });
    r.ok(out);
  });

  d.add("acl.list", [this](const Params& p, const Responder& r) {
    p.only({"target"});
    auto only = p.optional_string("target");
    if (only) target_of(running_, *only);
    json out = json::array();
    for (const auto& t : running_.targets) {
      if (only && t.name != *only) continue;
      json luns = json::object();
      for (const auto& l : t.luns)
        if (!l.allowed_initiators.empty()) luns[std::to_string(l.number)] = l.allowed_initiators;
      out.push_back({{"target", t.name},
                     {"allowed_initiators", t.allowed_initiators},
                     {"lun_allowed_initiators", luns},
                     {"chap", t.chap.has_value()}});
    }
    r.ok(out);
  });

  d.add("portal.list", [this](const Params& p, const Responder& r) {
    p.only({});
    json out = json::array();
    for (const auto& portal : running_.portals) out.push_back({{"listen", portal.to_string()}});
    r.ok(out);
  });

  d.add("session.list", [this](const Params& p, const Responder& r) {
    p.only({"target", "all"});
    auto only = p.optional_string("target");
    bool all = p.flag("all", false);  // also connections still logging in, and discovery
    server_.visit_sessions(
        [only, all](net::SocketConnection&, const net::SessionInfo& s) {
          if (!all && (!s.logged_in || s.discovery || s.closing)) return false;
          return !only || s.target == *only;
        },
        [r](std::vector<net::SessionInfo> sessions) {
          std::sort(sessions.begin(), sessions.end(),
                    [](const auto& a, const auto& b) { return a.connection_id < b.connection_id; });
          json out = json::array();
          for (const auto& s : sessions) out.push_back(session_json(s));
          r.ok(out);
        });
  });

  // ---------------------------------------------------------------- changes
  auto respond = [](const Responder& r) {
    return std::make_pair([r](const json& result) { r.ok(result); },
                          [r](int code, const std::string& m) { r.fail(code, m); });
  };

  d.add("target.add", [this, respond](const Params& p, const Responder& r) {
    p.only({"name", "alias", "allowed_initiators"});
    config::Config next = running_;
    config::Target t;
    t.name = p.string("name");
    for (const auto& e : next.targets)
      if (e.name == t.name)
        throw RpcError(rpc_error::invalid_params, "target " + t.name + " exists already");
    t.alias = p.optional_string("alias").value_or("");
    t.allowed_initiators =
        p.optional_strings("allowed_initiators").value_or(std::vector<std::string>{});
    next.targets.push_back(std::move(t));
    auto [ok, fail] = respond(r);
    change(std::move(next), {}, ok, fail);
  });

  d.add("target.remove", [this, respond](const Params& p, const Responder& r) {
    p.only({"name", "force"});
    config::Config next = running_;
    std::string name = p.string("name");
    target_of(next, name);
    std::erase_if(next.targets, [&](const auto& t) { return t.name == name; });
    auto [ok, fail] = respond(r);
    change(std::move(next), {.force = p.flag("force", false)}, ok, fail);
  });

  d.add("lun.add", [this, respond](const Params& p, const Responder& r) {
    std::vector<std::string> allowed{"target", "lun"};
    for (auto key : config::kLunKeys)
      if (key != "number") allowed.emplace_back(key);
    p.only(allowed);
    config::Config next = running_;
    config::Target& t = target_of(next, p.string("target"));
    config::Lun l = lun_from_params(p);
    for (const auto& e : t.luns)
      if (e.number == l.number)
        throw RpcError(rpc_error::invalid_params,
                       "target " + t.name + " has a LUN " + std::to_string(l.number) + " already");
    t.luns.push_back(std::move(l));
    auto [ok, fail] = respond(r);
    change(std::move(next), {}, ok, fail);
  });

  d.add("lun.remove", [this, respond](const Params& p, const Responder& r) {
    p.only({"target", "lun", "force"});
    config::Config next = running_;
    config::Target& t = target_of(next, p.string("target"));
    auto n = static_cast<std::uint32_t>(p.uint("lun", 0, 16383));
    if (std::erase_if(t.luns, [n](const auto& l) { return l.number == n; }) == 0)
      throw RpcError(rpc_error::invalid_params,
                     "target " + t.name + " has no LUN " + std::to_string(n));
    auto [ok, fail] = respond(r);
    change(std::move(next), {.force = p.flag("force", false)}, ok, fail);
  });

  d.add("lun.resize", [this, respond](const Params& p, const Responder& r) {
    p.only({"target", "lun", "size"});
    config::Config next = running_;
    config::Target& t = target_of(next, p.string("target"));
    auto n = static_cast<std::uint32_t>(p.uint("lun", 0, 16383));
    std::uint64_t size = p.uint("size", 1, std::uint64_t{1} << 62);
    auto it =
        std::find_if(t.luns.begin(), t.luns.end(), [n](const auto& l) { return l.number == n; });
    if (it == t.luns.end())
      throw RpcError(rpc_error::invalid_params,
                     "target " + t.name + " has no LUN " + std::to_string(n));
    auto lu = registry_.catalog().find_target(t.name)->luns()->find(n);
    std::uint64_t now = lu ? lu->backend().size_bytes() : 0;
    if (size < now)
      throw RpcError(rpc_error::invalid_params,
                     "size " + std::to_string(size) + " is smaller than the LUN (" +
                         std::to_string(now) + " bytes): shrinking is not supported");
    if (size == now) return r.ok({{"applied", json::array()}, {"needs_restart", json::array()}});
    it->size = size;
    // The running config may remember a smaller size than the LUN has (a grown file).
    auto [ok, fail] = respond(r);
    change(std::move(next), {}, ok, fail);
  });

  auto acl = [this, respond](bool add) {
    return [this, respond, add](const Params& p, const Responder& r) {
      p.only({"target", "initiator", "lun"});
      config::Config next = running_;
      config::Target& t = target_of(next, p.string("target"));
      std::string who = p.string("initiator");
      if (auto problem = config::iscsi_name_problem(who))
        throw RpcError(rpc_error::invalid_params,
                       "\"" + who + "\" is not a valid iSCSI name: " + *problem);
      std::vector<std::string>* list = &t.allowed_initiators;
      std::string where = "target " + t.name;
      if (auto n = p.optional_uint("lun", 0, 16383)) {
        auto it = std::find_if(t.luns.begin(), t.luns.end(),
                               [&](const auto& l) { return l.number == *n; });
        if (it == t.luns.end())
          throw RpcError(rpc_error::invalid_params,
                         "target " + t.name + " has no LUN " + std::to_string(*n));
        list = &it->allowed_initiators;
        where += " LUN " + std::to_string(*n);
      }
      if (add) {
        add_unique(*list, who);
      } else {
        if (std::erase(*list, who) == 0)
          throw RpcError(rpc_error::invalid_params, who + " is not on the list of " + where);
      }
      auto [ok, fail] = respond(r);
      change(std::move(next), {}, ok, fail);
    };
  };
  d.add("acl.add", acl(true));
  d.add("acl.remove", acl(false));

  auto portal_of = [](const std::string& listen) {
    try {
      // The loader's own portal rules; it wants a target, so it gets a stand-in.
      auto c = config::load_string("[[portal]]\nlisten = " + json(listen).dump() +
                                       "\n[[target]]\nname = \"iqn.2000-01.com.example:x\"\n",
                                   "listen");
      return c.portals.at(0);
    } catch (const config::ConfigError& e) {
      throw RpcError(rpc_error::invalid_params, bare_message(e));
    }
  };
  d.add("portal.add", [this, respond, portal_of](const Params& p, const Responder& r) {
    p.only({"listen"});
    config::Config next = running_;
    next.portals.push_back(portal_of(p.string("listen")));
    auto [ok, fail] = respond(r);
    change(std::move(next), {}, ok, fail);
  });
  d.add("portal.remove", [this, respond, portal_of](const Params& p, const Responder& r) {
    p.only({"listen"});
    config::Config next = running_;
    std::string name = portal_of(p.string("listen")).to_string();
    if (std::erase_if(next.portals, [&](const auto& q) { return q.to_string() == name; }) == 0)
      throw RpcError(rpc_error::invalid_params, "no portal " + name + " (ringtgtctl portal list)");
    auto [ok, fail] = respond(r);
    change(std::move(next), {}, ok, fail);
  });

  // ---------------------------------------------------------------- sessions
  d.add("session.close", [this](const Params& p, const Responder& r) {
    p.only({"tsih", "initiator", "isid"});
    auto tsih = p.optional_uint("tsih", 1, 65535);
    auto initiator = p.optional_string("initiator");
    if (!tsih && !initiator)
      throw RpcError(rpc_error::invalid_params, "give \"tsih\" or \"initiator\" (and \"isid\")");
    auto isid = p.optional_string("isid");
    server_.visit_sessions(
        [tsih, initiator, isid](net::SocketConnection& c, const net::SessionInfo& s) {
          if (!s.logged_in || s.discovery || s.closing) return false;
          if (tsih && s.tsih != *tsih) return false;
          if (initiator && s.initiator != *initiator) return false;
          if (isid && isid_hex(s.isid) != *isid) return false;
          c.close("closed by the administrator");
          return true;
        },
        [r](std::vector<net::SessionInfo> closed) {
          if (closed.empty())
            return r.fail(rpc_error::invalid_params,
                          "no such session (ringtgtctl session list shows them)");
          json out = json::array();
          for (const auto& s : closed) {
            spdlog::info("admin: closed session tsih {} of {} ({})", s.tsih, s.initiator, s.peer);
            out.push_back(session_json(s));
          }
          r.ok({{"closed", out}});
        });
  });

  d.add("connection.close", [this](const Params& p, const Responder& r) {
    p.only({"id"});
    std::uint64_t id = p.uint("id", 1, std::numeric_limits<std::uint64_t>::max());
    server_.visit_sessions(
        [id](net::SocketConnection& c, const net::SessionInfo& s) {
          if (s.connection_id != id) return false;
          c.close("closed by the administrator");
          return true;
        },
        [r, id](std::vector<net::SessionInfo> closed) {
          if (closed.empty())
            return r.fail(rpc_error::invalid_params, "no connection " + std::to_string(id) +
                                                         " (ringtgtctl session list --all)");
          spdlog::info("admin: closed connection {} ({})", id, closed[0].peer);
          r.ok({{"closed", session_json(closed[0])}});
        });
  });

  // ---------------------------------------------------------------- config file
  d.add("config.reload", [this, respond](const Params& p, const Responder& r) {
    p.only({"force"});
    auto [ok, fail] = respond(r);
    reload(p.flag("force", false), ok, fail);
  });

  d.add("config.write", [this](const Params& p, const Responder& r) {
    p.only({"path"});
    std::string path = p.optional_string("path").value_or(running_.source);
    if (path.front() != '/' && path != running_.source)
      throw RpcError(rpc_error::invalid_params, "path must be absolute, not \"" + path + "\"");
    common::write_file_atomically(path, config::to_toml(running_));
    spdlog::info("admin: running configuration written to {}", path);
    r.ok({{"path", path}});
  });
}

}  // namespace ringtgt::admin
