#include "copy_methods.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>

#include "ringtgt/lun/lun_factory.hpp"
#include "ringtgt/storage/mirrored_backend.hpp"

namespace ringtgt::admin {

namespace {

using storage::MirroredBackend;

struct MirroredLun {
  std::shared_ptr<scsi::LogicalUnit> lu;  // keeps the backend alive
  MirroredBackend* mirror;
  std::size_t copy;
  std::string label;  // "target T LUN n"
};

MirroredLun mirrored_lun(const net::TargetCatalog& registry, const std::string& target,
                         std::uint64_t n, const std::string& copy) {
  auto entry = registry.find_target(target);
  if (!entry) {
    throw RpcError(rpc_error::invalid_params,
                   "no target named " + target + " (ringtgtctl target list shows them)");
  }
  auto lu = entry->luns()->find(n);
  const std::string label = "target " + target + " LUN " + std::to_string(n);
  if (!lu) throw RpcError(rpc_error::invalid_params, label + " does not exist");
  auto* m = dynamic_cast<MirroredBackend*>(&lu->backend());
  if (m == nullptr) throw RpcError(rpc_error::invalid_params, label + " has no copies");
  std::string names;
  for (std::size_t i = 0; i < m->copy_count(); ++i) {
    if (m->copy_name(i) == copy) return {std::move(lu), m, i, label};
    names += (i ? ", " : "") + m->copy_name(i);
  }
  throw RpcError(rpc_error::invalid_params, label + " has no copy " + copy + " (" + names + ")");
}

MirroredLun mirrored_lun(const net::TargetCatalog& registry, const Params& p) {
  return mirrored_lun(registry, p.string("target"), p.uint("lun", 0, 16383), p.string("copy"));
}

// Percent of the running resync done: copied / (copied + still dirty).
json resync_progress(const metrics::MirrorCounters::Copy& c, std::uint64_t dirty) {
  if (c.state.load() != metrics::MirrorCounters::State::resyncing) return nullptr;
  const std::uint64_t done = c.resync_done.load(std::memory_order_relaxed);
  if (done + dirty == 0) return 100.0;
  return static_cast<double>(done * 1000 / (done + dirty)) / 10.0;
}

// A remote copy's LUN as its last login found it; null for a local copy.
json remote_json(const storage::Backend& store) {
  const auto link = store.remote_link();
  if (!link) return nullptr;
  json max = nullptr;
  if (link->max_transfer_bytes != 0) max = link->max_transfer_bytes;
  return {{"url", store.describe()},
          {"connected", store.connected()},
          {"max_transfer_bytes", max},
          {"unmaps_as", link->unmaps_as.empty() ? json(nullptr) : json(link->unmaps_as)}};
}

json copy_json(const std::string& target, std::uint64_t lun, MirroredBackend& m, std::size_t i) {
  const auto& c = *m.mirror_counters()->copies[i];
  const std::uint64_t dirty = m.dirty_bytes(i);
  return {{"target", target},
          {"lun", lun},
          {"copy", m.copy_name(i)},
          {"state", metrics::MirrorCounters::to_string(c.shown_state())},
          {"dirty_bytes", dirty},
          {"resync_progress", resync_progress(c, dirty)},
          {"resync_done_bytes", c.resync_done.load(std::memory_order_relaxed)},
          {"resynced_bytes", c.resynced_bytes.load(std::memory_order_relaxed)},
          {"region_size", m.region_size()},
          {"failure_domain", c.failure_domain},
          {"redundancy", m.mirror_counters()->redundancy},
          {"redundancy_warning", m.mirror_counters()->redundancy_warning},
          {"writes", c.writes.load(std::memory_order_relaxed)},
          {"writes_behind", c.writes_behind.load(std::memory_order_relaxed)},
          {"remote", remote_json(m.copy_backend(i))}};
}

// f(target, lun, lu, mirror) for every mirrored LUN (of target only, if set).
template <typename F>
void for_each_mirror(const net::TargetCatalog& registry, const std::optional<std::string>& only,
                     F&& f) {
  for (const auto& entry : registry.targets()) {
    if (only && entry->name != *only) continue;
    auto map = entry->luns();
    for (auto n : map->luns()) {
      auto lu = map->find(n);
      auto* m = lu ? dynamic_cast<MirroredBackend*>(&lu->backend()) : nullptr;
      if (m != nullptr) f(entry->name, n, lu, *m);
    }
  }
}

// For every mirrored LUN, starts the resync of the copies pick(mirror)
// names, as ringtgtctl copy resync does; why goes in the log line. A copy
// that cannot begin one now is left as it is.
template <typename Pick>
void start_resyncs(const net::TargetCatalog& registry, const RunOnReactor& run, Pick&& pick,
                   const char* why) {
  for_each_mirror(registry, std::nullopt,
                  [&](const std::string& target, std::uint64_t n,
                      const std::shared_ptr<scsi::LogicalUnit>& lu, MirroredBackend& m) {
                    for (std::size_t i : pick(m)) {
                      if (!m.begin_resync(i).empty()) continue;
                      spdlog::info("target {} LUN {}: {} copy {}", target, n, why, m.copy_name(i));
                      run(n, [m = &m, i, lu]() { m->run_resync(i, lu); });
                    }
                  });
}

const config::Lun& lun_config(const config::Config& running, const std::string& target,
                              std::uint64_t n) {
  for (const auto& t : running.targets) {
    if (t.name != target) continue;
    for (const auto& l : t.luns) {
      if (l.number == n) return l;
    }
  }
  throw RpcError(rpc_error::refused, "target " + target + " LUN " + std::to_string(n) +
                                         " is not in the running configuration");
}

// How long the I/O on a replaced store may take to finish: past a remote
// copy's 10 s command bound, with room to spare.
constexpr auto kDrainLimit = std::chrono::seconds(60);
constexpr auto kDrainPoll = std::chrono::milliseconds(5);

// One copy.replace, from the new store's opening to the answer.
struct Replacement : std::enable_shared_from_this<Replacement> {
  Replacement(CopyMethodsContext& c, MirroredLun l, lun::CopyStore s, Responder r,
              std::string target, std::uint64_t n, std::function<void()> release)
      : ctx(c),
        lun(std::move(l)),
        store(std::move(s)),
        responder(std::move(r)),
        target(std::move(target)),
        number(n),
        release(std::move(release)),
        timer(c.io) {}

  // Polls until no I/O is in flight on the old store, then swaps it.
  void wait_for_drain() {
    if (lun.mirror->replace_drained(lun.copy)) return swap();
    if (std::chrono::steady_clock::now() > deadline) {
      lun.mirror->abandon_replace(lun.copy);
      release();
      return responder.fail(rpc_error::refused,
                            lun.label + ": the I/O on copy " + name() + "'s old store did not " +
                                "finish within 60 s; the copy stays out of sync on its old store");
    }
    timer.expires_after(kDrainPoll);
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->wait_for_drain();
    });
  }

  void swap() {
    retire(lun.mirror->finish_replace(lun.copy, std::move(store.backend), store.location));
    std::string full_sync = "once it connects";  // check_connections starts it then
    if (lun.mirror->copy_backend(lun.copy).connected()) {
      full_sync = lun.mirror->begin_resync(lun.copy);
      if (full_sync.empty()) {
        full_sync = "started";
        MirroredBackend* m = lun.mirror;
        const std::size_t copy = lun.copy;
        ctx.run(number, [m, copy, lu = lun.lu]() mutable { m->run_resync(copy, std::move(lu)); });
      } else {
        full_sync = "not started: " + full_sync;
      }
    }
    json answer = copy_json(target, number, *lun.mirror, lun.copy);
    answer["location"] = lun.mirror->copy_location(lun.copy);
    answer["full_sync"] = full_sync;
    release();
    responder.ok(answer);
  }

  // The old store goes once every reactor has gone round its loop (a
  // completion from it may still be returning on one), on the control plane.
  void retire(std::unique_ptr<storage::Backend> old) {
    struct Retired {
      Retired(std::unique_ptr<storage::Backend> s, boost::asio::io_context& i)
          : store(std::move(s)), io(i) {}
      Retired(const Retired&) = delete;
      Retired& operator=(const Retired&) = delete;
      std::unique_ptr<storage::Backend> store;
      boost::asio::io_context& io;
      ~Retired() {
        boost::asio::post(io, [s = std::shared_ptr<storage::Backend>(std::move(store))] {});
      }
    };
    auto retired = std::make_shared<Retired>(std::move(old), ctx.io);
    for (std::size_t k = 0; k < ctx.reactor_count(); ++k) {
      try {
        ctx.run(k, [retired] {});
      } catch (const std::exception&) {
        // The reactors are gone (shutdown): none can be returning from it.
      }
    }
  }

  const std::string& name() const { return lun.mirror->copy_name(lun.copy); }

  CopyMethodsContext& ctx;
  MirroredLun lun;
  lun::CopyStore store;
  Responder responder;
  std::string target;
  std::uint64_t number;
  std::function<void()> release;  // of CopyMethodsContext::exclusive
  boost::asio::steady_timer timer;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::now() + kDrainLimit;
};

// Once no configuration change is under way (the LU found again: a reload
// may have replaced it meanwhile); throws RpcError when it cannot start.
void start_replacement(CopyMethodsContext& ctx, const std::string& target, std::uint64_t n,
                       const std::string& copy, const Responder& r,
                       const std::function<void()>& release) {
  MirroredLun l = mirrored_lun(ctx.registry, target, n, copy);
  const config::Lun& cfg = lun_config(ctx.running, target, n);
  lun::CopyStore store;
  try {
    store = lun::open_copy_store(target, cfg, copy, ctx.running.fault_testing.fault_injection,
                                 l.mirror->size_bytes());
  } catch (const std::exception& e) {
    throw RpcError(rpc_error::refused, std::string(e.what()) + " (the copy is left as it was)");
  }
  if (l.mirror->can_unmap() && !store.backend->can_unmap()) {
    throw RpcError(rpc_error::refused, l.label + ": the new store of copy " + copy +
                                           " cannot deallocate blocks, and the LUN does");
  }
  if (std::string why = l.mirror->begin_replace(l.copy); !why.empty())
    throw RpcError(rpc_error::refused, l.label + ": " + why);
  spdlog::info("admin: {}: replacing the store of copy {} with {}", l.label, copy, store.location);
  auto job =
      std::make_shared<Replacement>(ctx, std::move(l), std::move(store), r, target, n, release);
  job->wait_for_drain();
}

}  // namespace

void resume_resyncs(const net::TargetCatalog& registry, const RunOnReactor& run) {
  start_resyncs(
      registry, run, [](MirroredBackend& m) { return m.take_resync_at_start(); },
      "resuming the resync of");
}

void resync_reconnected_copies(const net::TargetCatalog& registry, const RunOnReactor& run) {
  start_resyncs(
      registry, run, [](MirroredBackend& m) { return m.check_connections(); },
      "reconnected: resyncing");
}

void add_copy_methods(Dispatcher& d, CopyMethodsContext context) {
  // The methods outlive this call; the context is theirs.
  auto ctx = std::make_shared<CopyMethodsContext>(std::move(context));
  const net::TargetCatalog& registry = ctx->registry;
  const RunOnReactor run = ctx->run;
  d.add("copy.list", [&registry](const Params& p, const Responder& r) {
    p.only({"target"});
    const auto only = p.optional_string("target");
    if (only && !registry.find_target(*only))
      throw RpcError(rpc_error::invalid_params, "no target named " + *only);
    json out = json::array();
    for_each_mirror(registry, only,
                    [&out](const std::string& target, std::uint64_t n,
                           const std::shared_ptr<scsi::LogicalUnit>&, MirroredBackend& m) {
                      for (std::size_t i = 0; i < m.copy_count(); ++i)
                        out.push_back(copy_json(target, n, m, i));
                    });
    r.ok(out);
  });

  d.add("copy.fail", [&registry](const Params& p, const Responder& r) {
    p.only({"target", "lun", "copy"});
    MirroredLun l = mirrored_lun(registry, p);
    if (l.mirror->copy_state(l.copy) == MirroredBackend::CopyState::in_sync &&
        l.mirror->in_sync_count() == 1) {
      throw RpcError(rpc_error::refused, "copy " + l.mirror->copy_name(l.copy) + " is the last " +
                                             "copy of " + l.label + " in sync");
    }
    l.mirror->mark_out_of_sync(l.copy, "taken out by ringtgtctl copy fail", 0);
    r.ok(copy_json(p.string("target"), p.uint("lun", 0, 16383), *l.mirror, l.copy));
  });

  d.add("copy.resync", [&registry, run](const Params& p, const Responder& r) {
    p.only({"target", "lun", "copy"});
    MirroredLun l = mirrored_lun(registry, p);
    if (std::string why = l.mirror->begin_resync(l.copy); !why.empty())
      throw RpcError(rpc_error::refused, l.label + ": " + why);
    spdlog::info("admin: {}: resync of copy {} requested", l.label, l.mirror->copy_name(l.copy));
    const std::uint64_t lun = p.uint("lun", 0, 16383);
    json answer = copy_json(p.string("target"), lun, *l.mirror, l.copy);
    MirroredBackend* m = l.mirror;
    const std::size_t copy = l.copy;
    run(lun, [m, copy, lu = std::move(l.lu)]() mutable { m->run_resync(copy, std::move(lu)); });
    r.ok(answer);
  });

  // The copy's store is opened afresh from the running configuration (a new
  // disk or volume at its path, a remote LUN made anew), the old one closed
  // once no I/O is in flight on it, and the new one filled in full.
  d.add("copy.replace", [ctx](const Params& p, const Responder& r) {
    p.only({"target", "lun", "copy"});
    mirrored_lun(ctx->registry, p);  // refused now if there is no such copy
    ctx->exclusive([ctx, target = p.string("target"), n = p.uint("lun", 0, 16383),
                    copy = p.string("copy"), r](std::function<void()> release) {
      try {
        start_replacement(*ctx, target, n, copy, r, release);
      } catch (const RpcError& e) {
        release();
        r.fail(e.code, e.what());
      }
    });
  });
}

}  // namespace ringtgt::admin
