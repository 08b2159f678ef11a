// The durable part of a mirrored LUN's resynchronisation state, in one file
// under state_dir (docs/replication.md, "After a crash"), after DRBD's
// activity log:
// - the "hot" regions: every region a write, zeroing or unmap may be in
//   flight in. A write whose regions are not all hot yet marks them and
//   writes the file (durably) before it starts on any copy; a write whose
//   regions are hot already costs a few atomic loads, no I/O. Hot regions
//   are cleared lazily, in a batch, once kHotLimit of them are hot and no
//   write is in flight (the caller holds a claim of the whole LUN).
//   On a reactor thread, the file is written on this log's own writer
//   thread, never on the reactor: the writes waiting for it wait there, and
//   every write that queued meanwhile shares one file write.
// - each copy's state and dirty-region bitmap, as of the last time the file
//   was written (every mark, clear and state change writes it).
// After a crash of ringtgt, the hot regions are the only places where the
// copies that were in sync can differ: the next start marks them dirty on
// every copy but the first in-sync one, and resyncs them.
// Private to the storage layer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dirty_bitmap.hpp"
#include "ringtgt/common/serial_worker.hpp"
#include "ringtgt/reactor/io_engine.hpp"

namespace ringtgt::storage {

class ActivityLog {
 public:
  // Regions kept hot before a lazy clear: the working set a write can reach
  // without writing the file (1 GiB at the default 1 MiB regions; DRBD's
  // default activity log covers about 4.8 GiB). A crash resyncs at most this
  // many regions that no write was in flight in.
  static constexpr std::uint64_t kHotLimit = 1024;

  // What the file says about one copy.
  struct CopyRecord {
    std::string name;
    bool in_sync = true;
    std::vector<std::uint64_t> dirty;  // DirtyBitmap::words()
    // Its path or URL (MirrorCopy::location); empty in files written before
    // it was kept, and then not compared.
    std::string location;
  };
  // What the file holds; the caller fills copies when it is written.
  struct Record {
    std::uint64_t size_bytes = 0;
    std::uint64_t region_size = 0;
    std::vector<std::uint64_t> hot;
    std::vector<CopyRecord> copies;
  };
  // Fills r.copies (under the log's lock): the copies as they are now.
  using Snapshot = std::function<void(std::vector<CopyRecord>& copies)>;
  // Called after each durable write of the file (under the log's lock), with
  // the copies it recorded.
  using Written = std::function<void(const std::vector<CopyRecord>& copies)>;

  ActivityLog(std::filesystem::path path, std::uint64_t size_bytes, std::uint64_t region_size,
              Snapshot snapshot, Written written = nullptr);

  // The file's content; nullopt when there is none (a first start). Throws
  // std::runtime_error for a file this build cannot read.
  std::optional<Record> load() const;
  // Restores the hot regions read by load, written in regions of
  // region_size bytes (the file's grid, maybe not this log's): they stay
  // hot until a clear. Writes nothing.
  void restore_hot(const std::vector<std::uint64_t>& words, std::uint64_t region_size);

  // Before a write to [offset, offset + len) starts: marks its regions hot,
  // durably, unless they are already. False (logged) when the file could not
  // be written: the write must not start.
  bool make_hot(std::uint64_t offset, std::uint64_t len);
  // The same for a write on home's thread: hot means it may start now;
  // failed, that it must not; later, that resume completes on home's thread
  // once the regions are durably hot (0) or the file could not be written
  // (-EIO). Without a reactor loop on home (unit tests) it is make_hot.
  enum class Hot { hot, failed, later };
  Hot make_hot(std::uint64_t offset, std::uint64_t len, reactor::IoOp* resume,
               reactor::IoEngine* home);
  // For a write on home's thread that must not be answered before the file
  // records the copies' states as they are now: resume completes on home's
  // thread once a write of the file that started after this call is durable
  // (0) or failed (-EIO). false without a reactor loop on home: then the
  // caller writes the file itself (persist).
  bool after_next_write(reactor::IoOp* resume, reactor::IoEngine* home);
  // Writes the file soon, on the writer thread (a copy's state changed on a
  // reactor, which must not wait for it); now without a reactor loop on home.
  void persist_soon(reactor::IoEngine* home);
  bool wants_clear() const { return hot_.dirty_regions() >= kHotLimit; }
  // No write is in flight: forgets the hot regions, durably.
  bool clear_hot();
  // The same, on the writer thread when home has a reactor loop (else now);
  // then done, on whichever thread wrote the file.
  void clear_hot(reactor::IoEngine* home, std::function<void()> done);
  // Writes the file now (a copy changed state or its bitmap).
  bool persist();
  std::uint64_t hot_regions() const { return hot_.dirty_regions(); }

  // --- a reload's hand-over (MirroredBackend: a LU's replacement opened
  // over the same file while the LU still serves) ---
  // From now on this log writes nothing itself: its hot regions go to next
  // (adopted now, durably), and each later write of it becomes one of
  // next's file, with its regions added; clear_hot does nothing (next's
  // writes may be in flight there). Again with another next: moves on.
  void retire_into(ActivityLog& next);
  // Back to writing its own file (its replacement was dropped).
  void unretire();
  // Marks hot the regions of `words` (a bitmap at region_size), durably.
  bool adopt_hot(const std::vector<std::uint64_t>& words, std::uint64_t region_size);
  const std::filesystem::path& path() const { return path_; }

 private:
  // A write waiting for its regions to be made hot.
  struct Waiter {
    std::uint64_t offset;
    std::uint64_t len;
    reactor::IoOp* resume;
    reactor::ForeignCompletions* home;
  };
  bool all_hot(std::uint64_t offset, std::uint64_t len) const;
  // Sets, in words (a copy of the hot bitmap), the bits of the regions of
  // [offset, offset + len).
  void add_regions(std::vector<std::uint64_t>& words, std::uint64_t offset,
                   std::uint64_t len) const;
  // Writer thread: makes the regions of every queued waiter hot with one
  // file write, then resumes them; again while more queued meanwhile.
  void write_waiting();
  // Writes the file with these hot regions (mu_ held); false when it failed.
  bool write_locked(const std::vector<std::uint64_t>& hot);

  // Queues w for the writer thread, which writes the file (with its regions
  // hot) and completes it; false without a reactor loop on home.
  bool queue_waiter(std::uint64_t offset, std::uint64_t len, reactor::IoOp* resume,
                    reactor::IoEngine* home);

  std::filesystem::path path_;
  ActivityLog* next_ = nullptr;  // mu_: the log it retired into
  Snapshot snapshot_;
  Written written_;
  DirtyBitmap hot_;
  std::mutex mu_;  // one writer of the file at a time
  std::mutex waiting_mu_;
  std::vector<Waiter> waiting_;  // waiting_mu_
  bool writer_queued_ = false;   // waiting_mu_: write_waiting is posted
  // Last member: its destructor runs the jobs still queued while the rest
  // of the log is alive.
  common::SerialWorker writer_;
};

// The file's text form (exposed for the unit tests).
std::string activity_log_text(const ActivityLog::Record& r);
// False when the text is not one this build wrote.
bool parse_activity_log(const std::string& text, ActivityLog::Record& out);

}  // namespace ringtgt::storage
