// One resynchronisation of a copy of a mirrored LUN (docs/replication.md,
// "Resynchronisation"): the copy's dirty regions, one after the other, read
// from an in-sync copy and written (durably) to it, at the LUN's resync
// rate, on the reactor thread that started it, while the LUN serves I/O.
//
// Ordering with writes: each region is copied under a RangeOrder claim of
// the whole region, like a write's. A write to the region that arrived
// first finishes on every copy (the resyncing one included) before the
// region is read; one that arrives later waits until the region is written.
// So the stale copy can never overwrite newer data, and a write is never
// lost. Writes to regions not yet copied go to the resyncing copy too; the
// region stays dirty and is copied (with that write in it) later.
//
// Before it copies, the job checks that the copy's store is still the one it
// left: a few of its clean regions (the first, and some spread over the
// LUN) are read from it and from an in-sync copy under the region's claim,
// so no write is in flight there. Clean regions must be equal; a difference
// means the store was made anew, rolled back or damaged behind ringtgt (a
// remote target's LUN re-created on a reconnect, a disk swapped at the same
// path), and the job copies every region instead of the dirty ones (DRBD
// refuses such a peer by its data generation; a store here carries none).
//
// The copy rejoins the in-sync set only after a check under a claim of the
// whole LUN finds no region dirty: no write that skipped it is in flight
// then. The job ends when the copy leaves the resyncing state (a write to
// it failed, ringtgtctl copy fail) or the reactor stops; the copy is then
// out_of_sync with its bitmap, and a later resync goes on from there.
// Private to the storage layer.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "ringtgt/reactor/io_engine.hpp"
#include "ringtgt/storage/range_order.hpp"

namespace ringtgt::storage {

class MirroredBackend;
class DirtyBitmap;

class ResyncJob final : public reactor::IoOp {
 public:
  // Bytes one read and write of a region moves (a larger region is copied
  // in several, under one claim).
  static constexpr std::uint64_t kChunkBytes = std::uint64_t{1} << 20;
  // Clean regions compared before the copying starts, and the bytes read at
  // the start of each.
  static constexpr std::uint64_t kProbes = 8;
  static constexpr std::uint64_t kProbeBytes = 4096;

  ResyncJob(MirroredBackend& m, std::size_t target, std::shared_ptr<void> keep_alive);
  ~ResyncJob();
  ResyncJob(const ResyncJob&) = delete;
  ResyncJob& operator=(const ResyncJob&) = delete;

  // On a reactor thread: starts copying; the job deletes itself at the end.
  void start();
  void on_complete(int result) override;

 private:
  enum class Step : std::uint8_t {
    claim_probe,
    probe_source,
    probe_copy,
    claim_region,
    read,
    write,
    claim_all
  };
  struct Pace final : reactor::TimerOp {
    ResyncJob* job = nullptr;
    void on_complete(int) override { job->next_region(); }
  };

  // The probe of the copy's clean regions (see above), then next_region.
  void next_probe();
  void probe_claimed();
  void probe_source_done(int result);
  void probe_copy_done(int result);
  void store_differs();
  void next_region();
  void copy_chunk();
  void read_done(int result);
  void write_done(int result);
  void region_done();
  // Waits until the bytes copied so far are due at the resync rate.
  void pace();
  void final_check();
  void release();
  void end(const char* why);

  MirroredBackend& m_;
  DirtyBitmap& bitmap_;
  const std::size_t target_;
  std::shared_ptr<void> keep_alive_;
  reactor::IoEngine* engine_ = nullptr;
  Step step_ = Step::claim_region;
  RangeOrder::Claim claim_;
  bool claimed_ = false;
  std::uint64_t cursor_ = 0;  // the next region to look at
  std::uint64_t region_ = 0;  // the region being copied
  std::uint64_t pos_ = 0;     // byte offset of the chunk being copied
  std::uint64_t end_ = 0;     // end of the region being copied
  std::uint64_t chunk_ = 0;   // bytes of the chunk in flight
  int source_ = -1;
  std::uint8_t* buf_ = nullptr;
  std::uint8_t* probe_buf_ = nullptr;  // the source's bytes, then the copy's
  std::uint64_t probe_ = 0;            // probes started
  std::uint64_t probe_len_ = 0;
  std::uint64_t copied_ = 0;
  std::chrono::steady_clock::time_point started_;
  Pace pace_;
};

}  // namespace ringtgt::storage
