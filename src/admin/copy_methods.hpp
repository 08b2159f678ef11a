// The admin socket's copy.* methods (ringtgtctl copy): the copies of mirrored
// LUNs, their state, dirty bytes and resync progress; taking one out of the
// in-sync set, resynchronising it, and replacing its store (docs/replication.md).
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>

#include "ringtgt/config/config.hpp"

#include "ringtgt/admin/json_rpc.hpp"
#include "ringtgt/net/target_catalog.hpp"

namespace ringtgt::admin {

// Runs fn on a reactor thread (a resync runs on one); key spreads the LUNs
// over the reactors.
using RunOnReactor = std::function<void(std::uint64_t key, std::function<void()> fn)>;

// What the copy.* methods reach besides the LUNs.
struct CopyMethodsContext {
  const net::TargetCatalog& registry;
  RunOnReactor run;
  // The reactors there are now (copy.replace waits for each to go round its loop).
  std::function<std::size_t()> reactor_count;
  const config::Config& running;  // where copy.replace reopens a copy's store from
  boost::asio::io_context& io;    // the control plane's
  // Runs a job once no configuration change (a reload, lun add/remove) or
  // other replacement is under way, holding them off until it calls release:
  // a replacement must not swap a store of a LU that a reload is replacing.
  std::function<void(std::function<void(std::function<void()> release)> job)> exclusive;
};

// copy.list {[target]}, copy.fail {target, lun, copy}, copy.resync {target,
// lun, copy}, copy.replace {target, lun, copy}.
void add_copy_methods(Dispatcher& d, CopyMethodsContext context);

// At start: resyncs the copies whose LUN's state file says they are out of
// sync (stopped so, or regions with writes in flight at a crash).
void resume_resyncs(const net::TargetCatalog& registry, const RunOnReactor& run);

// Every fraction of a second: notes which remote copies are connected (a
// copy whose connection is lost leaves the in-sync set) and resyncs those
// that connected again since they left it.
void resync_reconnected_copies(const net::TargetCatalog& registry, const RunOnReactor& run);

}  // namespace ringtgt::admin
