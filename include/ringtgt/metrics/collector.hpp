// The Prometheus side of the counters: a Collectable that sums the per-worker
// blocks at scrape time, and the HTTP endpoint that serves /metrics.
//
// Metric names (all with the ringtgt_ prefix):
//   lun_operations_total{target,lun,kind}     counter  kind: read|write|flush|unmap|other
//   lun_bytes_total{target,lun,kind}          counter  Data-In/Data-Out bytes of GOOD commands
//   lun_latency_seconds{target,lun,kind}      histogram  10 us .. 1 s, 1-2-5 buckets
//   lun_errors_total{target,lun,reason}       counter  sense key name (illegal_request,
//                                                      medium_error, unit_attention, ...) or
//                                                      status (reservation_conflict, busy, ...)
//   lun_commands_in_flight{target,lun}        gauge
//   target_sessions{target}, target_connections{target}  gauges
//   discovery_sessions                        gauge
//   connections{worker}                       gauge    TCP connections on each worker
//   login_attempts_total                      counter  logins that succeeded or were refused
//   login_failures_total{reason}              counter  auth|authorization|bad_request|other
//   pdu_rejects_total                         counter  Reject PDUs sent
//   digest_errors_total{kind}                 counter  header|data (metrics::count_digest_error)
//   reactor_busy_seconds_total{worker}        counter  loop time not spent waiting
//   reactor_ticks_total{worker}               counter  the reactor's 250 ms tick (its heartbeat):
//                                                      flat while the loop is stuck
//   buffer_memory_bytes, buffer_memory_limit_bytes  gauges  command data buffers held, and
//                                                      limits.max_buffer_memory
//   lun_faults_injected_total{target,lun,fault}  counter  eio|enospc|short|flush|delay; only
//                                                      with [testing] fault_injection
//   commands_refused_total{cause}             counter  BUSY / TASK SET FULL before the LUN:
//                                                      buffer_memory|task_slots
//   mirrored LUNs only (docs/replication.md):
//   lun_copy_state{target,lun,copy,state}     gauge    1 for the copy's state (in_sync|
//                                                      out_of_sync), 0 for the other
//   lun_copy_writes_total{target,lun,copy}    counter  writes, zeroings, unmaps it completed
//   lun_copies_in_sync{target,lun}, lun_ack_quorum{target,lun}  gauges  writes fail (or the
//                                                      LUN turns read-only) while in_sync < quorum
//   lun_read_repairs_total{target,lun}        counter  failed reads served from another copy and
//                                                      written back
//   lun_quorum_losses_total{target,lun}       counter  times in-sync copies fell below ack_quorum
#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/metrics/mirror_counters.hpp"
#include "ringtgt/metrics/store_counters.hpp"

namespace prometheus {
class Exposer;
}

namespace ringtgt::metrics {

// What there is to report: built by the daemon from its registry and workers,
// replaced as a whole when the configuration changes. The shared_ptrs keep the
// counters alive while a scrape reads them.
struct Catalog {
  struct Lun {
    std::string target;
    std::uint64_t lun = 0;
    std::shared_ptr<const LunStats> stats;
    std::shared_ptr<const StoreCounters> store;  // a remote store's (RBD); may be null
    // Set only for a LUN that injects faults ([testing] fault_injection).
    std::shared_ptr<const FaultCounters> faults;
    // Set only for a mirrored LUN (one with [[target.lun.copy]]).
    std::shared_ptr<const MirrorCounters> mirror;
  };
  struct Target {
    std::string name;
    std::shared_ptr<const TargetCounters> counters;
  };
  struct Worker {
    unsigned index = 0;
    const WorkerCounters* counters = nullptr;  // outlives the collector (the workers do)
    std::function<std::size_t()> connections;  // thread-safe
  };
  std::vector<Lun> luns;
  std::vector<Target> targets;
  std::vector<Worker> workers;
  // Command data buffers of all workers: bytes held now (in use and kept for
  // reuse; thread-safe) and their cap (0: none). Unset: not exported.
  std::function<std::size_t()> buffer_memory_held;
  std::size_t buffer_memory_limit = 0;
};

// The sums over workers of one LUN's blocks.
struct LunTotals {
  struct PerKind {
    std::uint64_t operations = 0;
    std::uint64_t bytes = 0;
    std::uint64_t latency_sum_ns = 0;
    std::array<std::uint64_t, kLatencyBuckets> buckets{};  // not cumulative
  };
  std::array<PerKind, kOpKinds> kinds{};
  std::array<std::uint64_t, kErrorReasons> errors{};
  std::uint64_t in_flight = 0;
};
LunTotals aggregate(const LunStats& stats);

// A Prometheus histogram (cumulative buckets, the last one +Inf, count = +Inf
// bucket) from per-bucket counts and a sum in nanoseconds.
prometheus::ClientMetric::Histogram latency_histogram(
    const std::array<std::uint64_t, kLatencyBuckets>& buckets, std::uint64_t sum_ns);

class Collector final : public prometheus::Collectable {
 public:
  void set_catalog(std::shared_ptr<const Catalog> catalog);
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  mutable std::mutex mu_;  // scrape and reload only
  std::shared_ptr<const Catalog> catalog_;
};

// The HTTP endpoint: GET /metrics on a literal IPv4 address ("127.0.0.1:9105";
// Debian's civetweb has no IPv6). Throws std::runtime_error naming the address when it cannot
// listen.
class Endpoint {
 public:
  Endpoint(const std::string& listen, std::shared_ptr<Collector> collector);
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

 private:
  std::shared_ptr<Collector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace ringtgt::metrics
