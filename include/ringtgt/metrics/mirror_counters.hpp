// What a mirrored LUN (storage::MirroredBackend) counts for /metrics: each
// copy's state and writes, read repairs and losses of the write quorum.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ringtgt/metrics/counters.hpp"

namespace ringtgt::metrics {

// Shared by every reactor that serves the LUN (relaxed atomics). The copies'
// in_sync flags are the backend's own state, not a copy of it.
struct MirrorCounters {
  // Where a copy stands (docs/replication.md): in the in-sync set; out of it,
  // missing the writes its dirty-region bitmap marks; being brought back
  // (written to, not yet read from or counted for the quorum); or out of it
  // while its remote store is not connected (shown only: the mirror keeps
  // such a copy out_of_sync, see Copy::shown_state).
  enum class State : std::uint8_t { in_sync, out_of_sync, resyncing, connecting };
  static constexpr State kStates[] = {State::in_sync, State::out_of_sync, State::resyncing,
                                      State::connecting};
  static const char* to_string(State s) {
    switch (s) {
      case State::in_sync:
        return "in_sync";
      case State::out_of_sync:
        return "out_of_sync";
      case State::resyncing:
        return "resyncing";
      case State::connecting:
        return "connecting";
    }
    return "?";
  }

  struct Copy {
    Copy(std::string n, std::string d) : name(std::move(n)), failure_domain(std::move(d)) {}
    const std::string name;            // "primary" for the LUN's own path
    const std::string failure_domain;  // may be empty
    std::atomic<bool> in_sync{true};   // state == in_sync, read on every I/O
    std::atomic<State> state{State::in_sync};
    // Whether its store is connected (a remote copy; a local one always is),
    // refreshed by the control plane (MirroredBackend::check_connections).
    std::atomic<bool> connected{true};
    // What ringtgtctl and /metrics show: connecting for a copy out of sync
    // whose remote store is not connected.
    State shown_state() const {
      const State s = state.load(std::memory_order_acquire);
      return s == State::out_of_sync && !connected.load(std::memory_order_relaxed)
                 ? State::connecting
                 : s;
    }
    std::atomic<std::uint64_t> writes{0};          // writes, zeroings and unmaps it completed
    std::atomic<std::uint64_t> dirty_bytes{0};     // what a resync would copy now
    std::atomic<std::uint64_t> resynced_bytes{0};  // copied by every resync so far
    std::atomic<std::uint64_t> resync_done{0};     // copied by the resync running now
    // Writes (and flushes) answered GOOD at quorum that this copy is still
    // doing; a read from it waits for the writes it overlaps.
    std::atomic<std::uint64_t> writes_behind{0};
    // How long this copy took to complete each data write (WRITE, not
    // zeroings or unmaps), answered early or not.
    std::array<std::atomic<std::uint64_t>, kLatencyBuckets> write_latency{};  // not cumulative
    std::atomic<std::uint64_t> write_latency_sum_ns{0};
    void record_write_latency(std::uint64_t ns) {
      write_latency[latency_bucket(ns)].fetch_add(1, std::memory_order_relaxed);
      write_latency_sum_ns.fetch_add(ns, std::memory_order_relaxed);
    }
  };
  std::vector<std::unique_ptr<Copy>> copies;  // [0]: the primary; fixed once built
  std::uint32_t ack_quorum = 1;
  // What the LUN survives by its copies' failure domains, as logged at start
  // ("survives the loss of 1 copy"); fixed once built.
  std::string redundancy;
  bool redundancy_warning = false;              // copies meant to protect each other share a domain
  std::atomic<std::uint64_t> read_repairs{0};   // failed reads served from another copy and
                                                // written back to the failing one
  std::atomic<std::uint64_t> quorum_losses{0};  // times in-sync copies fell below ack_quorum
  // Writes held below quorum under on_quorum_loss = "wait" right now.
  std::atomic<std::uint64_t> writes_waiting_for_quorum{0};
  // Writes, zeroings and unmaps answered GOOD: held by every copy of the
  // LUN then, or only by ack_quorum of them or more (the LUN was degraded,
  // or it was answered before a slower copy had it).
  std::atomic<std::uint64_t> writes_on_all_copies{0};
  std::atomic<std::uint64_t> writes_at_quorum_only{0};
};

}  // namespace ringtgt::metrics
