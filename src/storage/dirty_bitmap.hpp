// Which regions of a copy of a mirrored LUN differ from the in-sync copies
// (docs/replication.md, "Resynchronisation"): a write, zeroing or unmap the
// copy missed marks every region it touches, and a resync copies only the
// marked regions. One bit per region, shared by every reactor that serves
// the LUN (atomic words: marking is a fetch_or, no lock on the write path).
// Private to the storage layer.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace ringtgt::storage {

class DirtyBitmap {
 public:
  // size_bytes: the LUN's; region_size: a power of two.
  DirtyBitmap(std::uint64_t size_bytes, std::uint64_t region_size);

  std::uint64_t region_size() const { return region_size_; }
  std::uint64_t regions() const { return regions_; }
  std::uint64_t size_bytes() const { return size_bytes_; }

  // Marks the regions [offset, offset + len) touches (len 0: none).
  void mark(std::uint64_t offset, std::uint64_t len);
  // Marks every region that a set bit of words overlaps, words being
  // regions of region_size bytes (another bitmap's form, maybe another
  // grid: a state file written with another resync_region_size).
  void mark_regions(const std::vector<std::uint64_t>& words, std::uint64_t region_size);
  void mark_all();
  // Clears region r; whether it was dirty.
  bool clear(std::uint64_t r);
  bool dirty(std::uint64_t r) const;
  // The first dirty region at or after from; regions() when there is none.
  std::uint64_t next_dirty(std::uint64_t from) const;
  std::uint64_t dirty_regions() const { return dirty_.load(std::memory_order_acquire); }
  // The bytes a resync would copy: the dirty regions, the last one only as
  // far as the LUN goes.
  std::uint64_t dirty_bytes() const;
  // Bytes of region r inside the LUN (the last region may be short).
  std::uint64_t region_bytes(std::uint64_t r) const;

  // The bits as 64-bit words, region 0 in bit 0 of word 0 (the state file's
  // form); load replaces every bit.
  std::vector<std::uint64_t> words() const;
  void load(const std::vector<std::uint64_t>& words);

 private:
  std::uint64_t size_bytes_;
  std::uint64_t region_size_;
  unsigned region_shift_;
  std::uint64_t regions_;
  std::size_t word_count_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> words_;
  std::atomic<std::uint64_t> dirty_{0};
};

}  // namespace ringtgt::storage
