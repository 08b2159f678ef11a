#include "resync_job.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>

#include "dirty_bitmap.hpp"
#include "ringtgt/storage/mirrored_backend.hpp"

namespace ringtgt::storage {

namespace {
using CopyState = MirroredBackend::CopyState;
}

ResyncJob::ResyncJob(MirroredBackend& m, std::size_t target, std::shared_ptr<void> keep_alive)
    : m_(m), bitmap_(*m.bitmaps_[target]), target_(target), keep_alive_(std::move(keep_alive)) {
  pace_.job = this;
  // Aligned for O_DIRECT copies (4096 covers every logical block size).
  buf_ = static_cast<std::uint8_t*>(
      std::aligned_alloc(4096, std::min(kChunkBytes, bitmap_.region_size())));
  probe_buf_ = static_cast<std::uint8_t*>(std::aligned_alloc(4096, 2 * kProbeBytes));
  if (buf_ == nullptr || probe_buf_ == nullptr) {
    std::free(buf_);
    std::free(probe_buf_);
    throw std::bad_alloc();
  }
}

ResyncJob::~ResyncJob() {
  std::free(buf_);
  std::free(probe_buf_);
}

void ResyncJob::start() {
  engine_ = reactor::IoEngine::current();
  started_ = std::chrono::steady_clock::now();
  spdlog::info("copy {} of {}: resync started: {} bytes in {} dirty region(s) of {} bytes, at {}",
               m_.copies_[target_].name, m_.options_.lun_label, bitmap_.dirty_bytes(),
               bitmap_.dirty_regions(), bitmap_.region_size(),
               m_.options_.resync_rate == 0
                   ? std::string("full speed")
                   : std::to_string(m_.options_.resync_rate) + " bytes/s at most");
  next_probe();
}

void ResyncJob::on_complete(int result) {
  switch (step_) {
    case Step::claim_probe:
      return probe_claimed();
    case Step::probe_source:
      return probe_source_done(result);
    case Step::probe_copy:
      return probe_copy_done(result);
    case Step::claim_region:
      pos_ = claim_.offset;
      end_ = claim_.offset + claim_.len;
      return copy_chunk();
    case Step::read:
      return read_done(result);
    case Step::write:
      return write_done(result);
    case Step::claim_all:
      return final_check();
  }
}

void ResyncJob::next_probe() {
  if (m_.copy_state(target_) != CopyState::resyncing) return end("the copy left resyncing");
  const std::uint64_t regions = bitmap_.regions();
  // Region 0 first: a LUN in use has a partition table or a file system
  // there, which a store made anew lacks.
  while (probe_ < kProbes && probe_ < regions) {
    const std::uint64_t r = probe_ * regions / std::min(kProbes, regions);
    ++probe_;
    if (bitmap_.dirty(r)) continue;
    region_ = r;
    step_ = Step::claim_probe;
    claim_ = {r * bitmap_.region_size(), bitmap_.region_bytes(r), this, engine_};
    claimed_ = true;
    if (m_.order_.admit(claim_)) probe_claimed();
    return;
  }
  next_region();
}

void ResyncJob::probe_claimed() {
  // Marked while the claim waited: a write went there, no probe.
  if (bitmap_.dirty(region_)) {
    release();
    return next_probe();
  }
  source_ = m_.enter_next_in_sync(-1);
  if (source_ < 0) {
    release();
    return end("no copy is in sync to copy from");
  }
  probe_len_ = std::min(kProbeBytes, bitmap_.region_bytes(region_));
  step_ = Step::probe_source;
  m_.copies_[static_cast<std::size_t>(source_)].backend->read(probe_buf_, probe_len_, claim_.offset,
                                                              this);
}

void ResyncJob::probe_source_done(int result) {
  m_.leave(static_cast<std::size_t>(source_));
  if (result < 0 || static_cast<std::uint64_t>(result) != probe_len_) {
    // Not the copy's fault: the copying reads it again and decides there.
    release();
    return next_probe();
  }
  step_ = Step::probe_copy;
  m_.copies_[target_].backend->read(probe_buf_ + kProbeBytes, probe_len_, claim_.offset, this);
}

void ResyncJob::probe_copy_done(int result) {
  if (result < 0 || static_cast<std::uint64_t>(result) != probe_len_) {
    release();
    m_.mark_out_of_sync(target_, "resync probe read", result < 0 ? result : -EIO);
    return end("a read from the copy failed");
  }
  const bool same = std::memcmp(probe_buf_, probe_buf_ + kProbeBytes, probe_len_) == 0;
  release();
  if (!same) return store_differs();
  next_probe();
}

void ResyncJob::store_differs() {
  const std::uint64_t at = region_ * bitmap_.region_size();
  m_.mark_all_dirty(target_);
  m_.persist_state();
  spdlog::warn(
      "copy {} of {}: its store differs from copy {} at byte {}, in a region no write missed: "
      "not the store it left (made anew, rolled back or damaged); every region is dirty ({} "
      "bytes, a full sync)",
      m_.copies_[target_].name, m_.options_.lun_label,
      m_.copies_[static_cast<std::size_t>(source_)].name, at, bitmap_.dirty_bytes());
  next_region();
}

void ResyncJob::next_region() {
  if (m_.copy_state(target_) != CopyState::resyncing) return end("the copy left resyncing");
  if (engine_ != nullptr && engine_->stopping()) return end("ringtgt is stopping");
  std::uint64_t r = bitmap_.next_dirty(cursor_);
  if (r == bitmap_.regions() && cursor_ != 0) r = bitmap_.next_dirty(0);  // marked behind us
  if (r == bitmap_.regions()) {
    // Nothing dirty seen: check again with every write held off.
    step_ = Step::claim_all;
    claim_ = {0, bitmap_.size_bytes(), this, engine_};
    claimed_ = true;
    if (m_.order_.admit(claim_)) final_check();
    return;
  }
  region_ = r;
  step_ = Step::claim_region;
  claim_ = {r * bitmap_.region_size(), bitmap_.region_bytes(r), this, engine_};
  claimed_ = true;
  if (m_.order_.admit(claim_)) on_complete(0);
}

void ResyncJob::copy_chunk() {
  source_ = m_.enter_next_in_sync(-1);
  if (source_ < 0) {
    release();
    return end("no copy is in sync to copy from");
  }
  chunk_ = std::min(kChunkBytes, end_ - pos_);
  step_ = Step::read;
  m_.copies_[static_cast<std::size_t>(source_)].backend->read(buf_, chunk_, pos_, this);
}

void ResyncJob::read_done(int result) {
  m_.leave(static_cast<std::size_t>(source_));
  if (result < 0 || static_cast<std::uint64_t>(result) != chunk_) {
    spdlog::error("copy {} of {}: resync read of {} bytes at byte {} from copy {} failed: {}",
                  m_.copies_[target_].name, m_.options_.lun_label, chunk_, pos_,
                  m_.copies_[static_cast<std::size_t>(source_)].name,
                  std::strerror(result < 0 ? -result : EIO));
    release();
    m_.mark_out_of_sync(target_, "resync read from an in-sync copy", result < 0 ? result : -EIO);
    return end("a read from the in-sync copy failed");
  }
  if (m_.copy_state(target_) != CopyState::resyncing) {
    release();
    return end("the copy left resyncing");
  }
  step_ = Step::write;
  // Durable before the region counts as clean, whatever write_ack says.
  m_.copies_[target_].backend->write(buf_, chunk_, pos_, true, this);
}

void ResyncJob::write_done(int result) {
  if (result < 0 || static_cast<std::uint64_t>(result) != chunk_) {
    release();
    m_.mark_out_of_sync(target_, "resync write", result < 0 ? result : -EIO);
    return end("a write to the copy failed");
  }
  auto& c = *m_.counters_->copies[target_];
  c.resync_done.fetch_add(chunk_, std::memory_order_relaxed);
  c.resynced_bytes.fetch_add(chunk_, std::memory_order_relaxed);
  copied_ += chunk_;
  pos_ += chunk_;
  if (pos_ < end_) return copy_chunk();
  region_done();
}

void ResyncJob::region_done() {
  // Still under the region's claim: no write marked it since it was read.
  bitmap_.clear(region_);
  m_.publish_dirty(target_);
  release();
  cursor_ = region_ + 1;
  pace();
}

void ResyncJob::pace() {
  const std::uint64_t rate = m_.options_.resync_rate;
  if (rate == 0 || engine_ == nullptr) return next_region();
  const auto due = started_ + std::chrono::nanoseconds(static_cast<std::int64_t>(
                                  static_cast<double>(copied_) * 1e9 / static_cast<double>(rate)));
  const auto now = std::chrono::steady_clock::now();
  if (due <= now) return next_region();
  engine_->start_timer(due - now, &pace_);
}

void ResyncJob::final_check() {
  const bool clean = bitmap_.dirty_regions() == 0;
  const bool back = clean && m_.rejoin(target_);
  release();
  if (back) return end(nullptr);
  if (clean) return end("the copy left resyncing");
  cursor_ = 0;
  next_region();  // a write marked a region meanwhile
}

void ResyncJob::release() {
  if (!claimed_) return;
  claimed_ = false;
  m_.order_.release(claim_);
}

void ResyncJob::end(const char* why) {
  auto& name = m_.copies_[target_].name;
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started_)
                      .count();
  if (why == nullptr) {
    spdlog::info("copy {} of {}: resync done: {} bytes copied in {} ms", name,
                 m_.options_.lun_label, copied_, ms);
  } else {
    // Not in the in-sync set: the copy waits, out of sync, with its bitmap.
    CopyState was = CopyState::resyncing;
    m_.counters_->copies[target_]->state.compare_exchange_strong(was, CopyState::out_of_sync);
    spdlog::warn("copy {} of {}: resync stopped after {} bytes in {} ms: {} ({} bytes still dirty)",
                 name, m_.options_.lun_label, copied_, ms, why, bitmap_.dirty_bytes());
  }
  m_.resync_running_[target_].store(false, std::memory_order_release);
  // The LU may go with the last reference: nothing of this job is used after.
  const std::shared_ptr<void> keep = std::move(keep_alive_);
  delete this;
}

}  // namespace ringtgt::storage
