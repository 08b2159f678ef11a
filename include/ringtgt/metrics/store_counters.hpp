// What a backend that talks to a remote store (librbd to a Ceph cluster)
// counts besides the LUN's own statistics: the store's latency as the backend
// sees it, its failures, and whether it answers now.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "ringtgt/metrics/counters.hpp"

namespace ringtgt::metrics {

// Shared by every reactor that serves the LUN: relaxed atomics, whose cost is
// nothing beside a network round trip to the store.
struct StoreCounters {
  std::array<std::atomic<std::uint64_t>, kLatencyBuckets> buckets{};  // not cumulative
  std::atomic<std::uint64_t> latency_sum_ns{0};
  std::atomic<std::uint64_t> errors{0};    // operations that failed, timeouts included
  std::atomic<std::uint64_t> timeouts{0};  // of them: the store did not answer in time
  std::atomic<bool> unreachable{false};    // the last operation found the store away
  // The store could not be opened (missing, too small, cluster away) and is
  // retried in the background; attempts that failed so far.
  std::atomic<bool> not_open{false};
  std::atomic<std::uint64_t> open_failures{0};

  void record(std::uint64_t latency_ns, int result, bool store_away) {
    buckets[latency_bucket(latency_ns)].fetch_add(1, std::memory_order_relaxed);
    latency_sum_ns.fetch_add(latency_ns, std::memory_order_relaxed);
    if (result < 0) errors.fetch_add(1, std::memory_order_relaxed);
    if (store_away) timeouts.fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace ringtgt::metrics
