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

  ResyncJob(MirroredBackend& m, std::size_t target, std::shared_ptr<void> keep_alive);
  ~ResyncJob();
  ResyncJob(const ResyncJob&) = delete;
  ResyncJob& operator=(const ResyncJob&) = delete;

  // On a reactor thread: starts copying; the job deletes itself at the end.
  void start();
  void on_complete(int result) override;

 private:
  enum class Step : std::uint8_t { claim_region, read, write, claim_all };
  struct Pace final : reactor::TimerOp {
    ResyncJob* job = nullptr;
    void on_complete(int) override { job->next_region(); }
  };

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
  std::uint64_t copied_ = 0;
  std::chrono::steady_clock::time_point started_;
  Pace pace_;
};

}  // namespace ringtgt::storage
