// The recording seam under the backends: what reached the page cache or the
// device, what was flushed, and what was acknowledged, in order. A checker
// (durability_check.hpp) replays it and says whether a power cut at any
// point could lose a write that was acknowledged as durable.
//
// Tests only: the daemon records when its config has [testing]
// durability_log = "PATH" (and says so loudly in its log); otherwise no log
// exists and every recording site is one null-pointer test.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ringtgt::storage {

struct DurabilityEvent {
  enum class Kind : std::uint8_t {
    write_done,       // a write's bytes are in the page cache, or on the device when durable
    flush_started,    // an fdatasync was submitted (covers the store's writes done before it)
    flush_done,       // and completed (result 0) or failed (-ECANCELED: never ran)
    ack,              // the backend completed a write to the logical unit
    sync_requested,   // SYNCHRONIZE CACHE reached the backend (id: the sync's)
    sync_ack,         // and the backend completed it (result 0)
    store_opened,     // a backing store joined the log (store, name, length: block size)
    command_started,  // a medium-changing command (tag) reached its logical unit
    command_done,     // the transport answered a medium-changing command (tag): result 1 =
                      // GOOD is going out; 0 = another status, or none (aborted)
  };
  DurabilityEvent(Kind k, std::uint64_t i) : kind(k), id(i) {}
  Kind kind;
  std::uint64_t id;  // the write's sequence number, or the flush's
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  bool durable = false;          // write_done: the write itself was durable (RWF_DSYNC)
  bool must_be_durable = false;  // ack / write_done / command_done: durability was promised
  int result = 0;                // flush_done / ack / sync_ack / command_done
  std::uint64_t flush_id = 0;    // which flush (flush_* events)
  std::uint32_t store = 0;       // which backing store (store_opened numbers them)
  // The IoOp the logical unit handed the backend: the command's Task. Links
  // a command's writes to its answer (command_done).
  std::uint64_t tag = 0;
  bool zeroes = false;     // write_done: the range now reads as zeroes (unmap, write zeroes)
  bool sync = false;       // command_done: a SYNCHRONIZE CACHE
  bool writeback = false;  // store_opened: the store's policy
  bool direct = false;     // store_opened: O_DIRECT
  // write_done: a hash (block_hash) of each block of the store's block size
  // the write covered, so the checker can rebuild the image.
  std::vector<std::uint64_t> block_hashes;
  std::string name;       // store_opened: the file or device
  std::uint64_t seq = 0;  // position in the log (set by record)
};

// The hash of one block's bytes that the log carries (not cryptographic:
// tells one payload from another, fast enough to run under load).
std::uint64_t block_hash(const std::uint8_t* p, std::size_t n);

class DurabilityLog {
 public:
  // In memory: events() returns what was recorded (unit tests).
  DurabilityLog();
  // Appends to a new file at path (binary; read_durability_log reads it).
  // Throws std::system_error naming the path.
  explicit DurabilityLog(const std::string& path);
  ~DurabilityLog();
  DurabilityLog(const DurabilityLog&) = delete;
  DurabilityLog& operator=(const DurabilityLog&) = delete;

  // From any thread. Each thread buffers its own records (no lock shared
  // with other threads on the way); a global sequence number keeps the order
  // in which they were recorded.
  void record(const DurabilityEvent& e);
  // A write_done for [offset, offset + len) of data, hashed per block_size.
  void record_write(DurabilityEvent e, const void* data, std::uint32_t block_size);
  std::uint64_t next_id() { return last_id_.fetch_add(1, std::memory_order_relaxed) + 1; }
  // Numbers a backing store and records its store_opened.
  std::uint32_t add_store(const std::string& name, std::uint64_t size, std::uint32_t block_size,
                          bool writeback, bool direct);

  // Writes every thread's buffered records to the file (at shutdown, once the
  // recording threads are done; also from the destructor).
  void flush();
  // The in-memory log, in order.
  std::vector<DurabilityEvent> events() const;
  const std::string& path() const { return path_; }

 private:
  struct ThreadBuffer;
  ThreadBuffer& buffer();
  void write_out(std::string& bytes);

  std::string path_;
  int fd_ = -1;
  const std::uint64_t generation_;  // tells this log's thread buffers from an earlier one's
  std::atomic<std::uint64_t> seq_{0};
  std::atomic<std::uint64_t> last_id_{0};
  std::atomic<std::uint32_t> stores_{0};
  mutable std::mutex mu_;  // the file, the buffer list, the in-memory log
  std::vector<std::unique_ptr<ThreadBuffer>> buffers_;
  std::vector<DurabilityEvent> events_;
};

// Reads a log file written by DurabilityLog, in recording order. Throws
// std::runtime_error saying what is wrong with it.
std::vector<DurabilityEvent> read_durability_log(const std::string& path);

// The process's recording seam: set once at startup by the daemon from its
// [testing] configuration, before any LUN is opened; null in production.
struct DurabilitySeam {
  DurabilityLog* log = nullptr;
  // [testing] ack_before_flush: durable writes are acknowledged from the page
  // cache, with no flush, so that a test can show the checker catching it.
  // Honoured only while the log records.
  bool ack_before_flush = false;
};
const DurabilitySeam& durability_seam();
void set_durability_seam(const DurabilitySeam& seam);

}  // namespace ringtgt::storage
