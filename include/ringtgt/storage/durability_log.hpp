// The recording seam under a file backend: what reached the page cache or the
// device, what was flushed, and what was acknowledged, in order. A checker
// replays it and says whether a power cut at any point could lose a write that
// was acknowledged as durable.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace ringtgt::storage {

struct DurabilityEvent {
  enum class Kind : std::uint8_t {
    write_done,      // a write's bytes are in the page cache, or on the device when durable
    flush_started,   // an fdatasync was submitted
    flush_done,      // and completed (result 0) or failed
    ack,             // the backend completed a write to the logical unit: GOOD follows
    sync_requested,  // SYNCHRONIZE CACHE reached the backend (id: the sync's)
    sync_ack,        // and was completed (result 0: GOOD follows)
  };
  Kind kind;
  std::uint64_t id;  // the write's sequence number, or the flush's
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
  std::uint32_t checksum = 0;    // of the data written (write_done)
  bool durable = false;          // write_done: the write itself was durable (RWF_DSYNC)
  bool must_be_durable = false;  // ack: the policy or FUA promised durability
  int result = 0;                // flush_done / ack
  std::uint64_t flush_id = 0;    // which flush (flush_* events)
};

// Appended to from every reactor thread of the backend: a mutex, cheap next
// to a disk write, and off (no log) in production.
class DurabilityLog {
 public:
  void record(const DurabilityEvent& e) {
    std::lock_guard lock(mu_);
    events_.push_back(e);
  }
  std::uint64_t next_id() {
    std::lock_guard lock(mu_);
    return ++last_id_;
  }
  std::vector<DurabilityEvent> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<DurabilityEvent> events_;
  std::uint64_t last_id_ = 0;
};

// Replays the log with a power cut after every event: each write acknowledged
// with a durability promise before the cut must be durable by then, i.e.
// written with RWF_DSYNC, or covered by a flush that started after its
// write_done and completed successfully before the ack; and each write
// acknowledged before a SYNCHRONIZE CACHE was requested must be durable when
// that SYNCHRONIZE CACHE is acknowledged (writeback). Returns one line per
// violation (empty: the log keeps every promise).
std::vector<std::string> check_durability(const std::vector<DurabilityEvent>& log);

}  // namespace ringtgt::storage
