// The faults armed on one LUN for a test: which I/O fails, comes up short or
// is slow, and how often. Read by the fault-injecting engine and backend
// (fault_injection.hpp) on every I/O, changed by the admin socket's fault.*
// methods. Never built unless [testing] fault_injection = true.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ringtgt/metrics/counters.hpp"

namespace ringtgt::storage {

using metrics::FaultKind;

// One armed fault. Offsets are bytes of the backing store.
struct FaultRule {
  std::uint64_t id = 0;  // given by FaultPlan::add
  FaultKind kind = FaultKind::eio;
  // Which transfers it hits (eio, short_transfer, delay; enospc hits writes
  // only, flush_failure the syncs).
  bool reads = true;
  bool writes = true;
  // [offset, offset + length) of the store; length 0: all of it.
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::chrono::milliseconds delay{0};  // delay: how late each hit I/O completes
  std::uint64_t count = 0;             // how many times it fires; 0: until cleared
  std::uint64_t fired = 0;

  bool overlaps(std::uint64_t at, std::uint64_t len) const {
    return length == 0 || (at < offset + length && offset < at + len);
  }
};

// Parses a fault kind as the admin socket names it ("eio", "enospc", "short",
// "flush", "delay").
std::optional<FaultKind> fault_kind_from_string(const std::string& s);

// What the device does with one read, write or sync.
struct DeviceFault {
  enum class Action : std::uint8_t {
    none,
    fail,       // complete with -error, moving nothing
    move_only,  // move only `bytes` and complete with that count (a short transfer)
  };
  Action action = Action::none;
  int error = 0;
  std::uint64_t bytes = 0;
};

class FaultPlan {
 public:
  enum class Io : std::uint8_t { read, write, sync };

  // block_size: a short transfer moves whole blocks of it (what O_DIRECT needs).
  explicit FaultPlan(std::uint32_t block_size = 512)
      : block_size_(block_size), counters_(std::make_shared<metrics::FaultCounters>()) {}

  // Arms r (its id is assigned and returned).
  std::uint64_t add(FaultRule r);
  // Disarms one rule; false when there is none with that id.
  bool remove(std::uint64_t id);
  void clear();
  std::vector<FaultRule> rules() const;

  // For the engine beneath the backend: what the kernel should answer this
  // read, write (at, len) or sync. An EIO range that starts inside the
  // transfer moves the good bytes before it first, as a disk does, and fails
  // when the rest is asked for. Counts what fires.
  DeviceFault at_device(Io io, std::uint64_t at, std::uint64_t len);
  // For the backend: how long to hold this I/O's completion back (zero: not at all).
  std::chrono::milliseconds delay_for(Io io, std::uint64_t at, std::uint64_t len);

  std::shared_ptr<const metrics::FaultCounters> counters() const { return counters_; }

 private:
  bool hits(const FaultRule& r, Io io, std::uint64_t at, std::uint64_t len) const;
  // Counts a firing of rules_[i]; a rule whose count is spent is dropped.
  void fire(std::size_t i);

  // Fast path: no lock while nothing is armed (every I/O asks).
  std::uint32_t block_size_;
  std::atomic<bool> armed_{false};
  mutable std::mutex mu_;
  std::vector<FaultRule> rules_;
  std::uint64_t next_id_ = 1;
  std::shared_ptr<metrics::FaultCounters> counters_;
};

}  // namespace ringtgt::storage
